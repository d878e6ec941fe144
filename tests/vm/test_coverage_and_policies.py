"""Coverage (did the scheduler under test schedule the workload?) and the ext and deadline
policies, in real VMs."""

from ktstr.runner import run_scenario
from ktstr.scenario.model import EXT, CgroupDef, Deadline, Op, Scenario, Step
from ktstr.scheduler import from_cli
from ktstr.topology import Topology

TOPO = Topology.parse("1n2l2c1t")


def scenario(*defs: CgroupDef) -> Scenario:
    return Scenario("policies", "", [Step([Op.add_cgroup(d) for d in defs])], duration_s=5)


def statuses(record: dict) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in record["findings"]:
        out.setdefault(f["check"], set()).add(f["status"])
    return out


def test_a_switch_partial_scheduler_that_took_no_worker_is_inconclusive_not_a_pass():
    # scx_qmap -p switches only SCHED_EXT tasks: the normal workers stay with EEVDF
    record, _ = run_scenario(
        scenario(CgroupDef("cg_0", workers=4)),
        TOPO,
        scheduler=from_cli("scx_qmap"),
        extra_args=("-p",),
    )
    assert record["verdict"] == "inconclusive", record["findings"]
    (f,) = [f for f in record["findings"] if f["check"] == "coverage"]
    assert f["kind"] == "not_scheduled" and "scheduled none of the 4 workers" in f["message"]
    assert all(w["ext_at_start"] is False for w in record["workers"])
    others = {c: s for c, s in statuses(record).items() if c != "coverage"}
    assert all(s <= {"pass", "skip"} for s in others.values()), record["findings"]


def test_ext_workers_are_scheduled_by_a_switch_partial_scheduler():
    record, _ = run_scenario(
        scenario(CgroupDef("cg_0", workers=4, policy=EXT)),
        TOPO,
        scheduler=from_cli("scx_qmap"),
        extra_args=("-p",),
    )
    assert record["verdict"] == "pass", record["findings"]
    (f,) = [f for f in record["findings"] if f["check"] == "coverage"]
    assert f["status"] == "pass" and "all 4 workers" in f["message"]
    assert all(w["policy"] == "ext" and w["ext_at_start"] for w in record["workers"])


def test_a_deadline_worker_gets_its_reserved_share_above_the_fair_class():
    record, _ = run_scenario(
        scenario(
            CgroupDef("cg_0", workers=4),
            CgroupDef("dl", workers=1, policy=Deadline(20_000, 100_000)),
        ),
        TOPO,
    )
    assert record["verdict"] == "pass", record["findings"]
    (dl,) = [w for w in record["workers"] if w["cgroup_path"] == "dl"]
    assert dl["policy"] == "deadline" and not dl.get("error")
    share = dl["cpu_time_ns"] / 1e9 / (dl["end_s"] - dl["start_s"])
    assert 0.1 < share < 0.3, share  # 20 ms of every 100 ms
