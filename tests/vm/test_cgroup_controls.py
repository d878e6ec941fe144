"""cgroup v2 controls and memory policies taking effect in a real guest, and the
throttled and numa_bind scenarios passing."""

import pytest

from ktstr import CgroupDef, CpusetSpec, HoldSpec, MemPolicy, Op, Scenario, Step, Topology
from ktstr.runner import run_scenario
from ktstr.scenario import catalog
from ktstr.scenario.work import cache_pressure

TWO_NODES = Topology.parse("2n2l1c1t")  # one CPU per node: cheap, and NUMA
TOUCH = cache_pressure(256, 64)


def controls_scenario() -> Scenario:
    first = [
        CgroupDef(
            "lim",
            workers=1,
            cpu_max=(50_000, 100_000),
            memory_max="256M",
            memory_high="200M",
            memory_low="8M",
            pids_max=32,
            io_weight=300,
        ),
        CgroupDef("bind1", workers=1, work=TOUCH, mems=(1,), mempolicy=MemPolicy("bind", (1,))),
        CgroupDef("inter", workers=1, work=TOUCH, mempolicy=MemPolicy("interleave", (0, 1))),
        CgroupDef("pref1", workers=1, work=TOUCH, mempolicy=MemPolicy("preferred", (1,))),
        CgroupDef(
            "local0",
            workers=1,
            work=TOUCH,
            cpuset=CpusetSpec.numa(0),
            cpu_idle=True,
            mempolicy=MemPolicy("local"),
        ),
    ]
    return Scenario(
        "controls",
        "every control and memory policy, and a quota lowered halfway",
        [
            Step([Op.add_cgroup(d) for d in first], HoldSpec(frac=0.5)),
            Step(
                [Op.set_controls("lim", cpu_max=(20_000, 100_000), pids_max=8)],
                HoldSpec(frac=0.5),
            ),
        ],
        duration_s=8,
    )


def rate(worker: dict, start: float, end: float) -> float:
    """CPUs' worth of time the worker got between two scenario times (its progress points)."""
    points = [p for p in worker["progress"] if start <= p[0] <= end]
    first, last = points[0], points[-1]
    return (last[3] - first[3]) / 1e9 / (last[0] - first[0])


@pytest.fixture(scope="module")
def controls_record() -> dict:
    record, _ = run_scenario(controls_scenario(), TWO_NODES)
    return record


def test_each_control_file_reads_back_as_declared_and_changed(controls_record):
    declared = {
        op["path"]: op["controls"]
        for step in controls_record["plan"]["steps"]
        for op in step["ops"]
        if op["op"] == "add_cgroup" and op.get("controls")
    }
    made = [e for e in controls_record["events"] if e["op"] == "add_cgroup"]
    read = {e["path"]: e["controls"] for e in made if e.get("controls")}
    assert set(declared) == set(read) == {"lim", "bind1", "local0"}
    assert declared["lim"]["io.weight"] == "300"  # the kernel names the device default
    assert read["lim"] == {**declared["lim"], "io.weight": "default 300"}
    assert read["bind1"] == declared["bind1"] == {"cpuset.mems": "1"}
    assert read["local0"] == declared["local0"] == {"cpu.idle": "1"}
    changed = [e for e in controls_record["events"] if e["op"] == "set_controls"]
    assert [e["controls"] for e in changed] == [{"cpu.max": "20000 100000", "pids.max": "8"}]


def test_a_quota_holds_its_worker_to_its_share_and_a_lower_one_to_less(controls_record):
    by = {w["cgroup_path"]: w for w in controls_record["workers"]}
    lim = by["lim"]
    periods, throttled, _ = lim["throttled"]["lim"]
    assert periods > 0 and throttled > 0
    half = controls_record["duration_s"] / 2
    before, after = rate(lim, 1.0, half), rate(lim, half + 0.5, half * 2)
    # half a CPU while others want the CPUs too (the kernel's slices let it overshoot a little)
    assert 0.3 < before < 0.7, before
    assert after < before * 0.75, (before, after)
    assert rate(by["inter"], 1.0, half) > before  # an unlimited neighbour gets more


def test_memory_policies_and_mems_are_what_the_kernel_applies(controls_record):
    by = {w["cgroup_path"]: w for w in controls_record["workers"]}
    assert by["bind1"]["mempolicy"] == {"mode": "bind", "nodes": [1]}
    assert by["bind1"]["mems_allowed"] == "1"
    assert by["bind1"]["numa_pages"] == {"1": 64}
    assert by["pref1"]["mempolicy"] == {"mode": "preferred", "nodes": [1]}
    assert by["pref1"]["numa_pages"] == {"1": 64}
    assert by["inter"]["mempolicy"] == {"mode": "interleave", "nodes": [0, 1]}
    assert by["inter"]["mems_allowed"] == "0-1"
    assert set(by["inter"]["numa_pages"]) == {"0", "1"}  # spread over both nodes
    assert by["local0"]["mempolicy"]["mode"] == "local"
    assert by["local0"]["numa_pages"] == {"0": 64}  # its CPU is on node 0
    assert "mempolicy" not in by["lim"]


def test_the_throttled_scenario_passes_with_the_quota_enforced():
    record, _ = run_scenario(catalog.get("throttled"), Topology.parse("1n2l2c1t"), duration_s=6)
    assert record["verdict"] == "pass", record["findings"]
    limited = [w for w in record["workers"] if w["cgroup_path"] == "limited"]
    assert all(w["throttled"]["limited"][1] > 0 for w in limited)
    (weighed,) = [f for f in record["findings"] if f["kind"] == "weights_ok"]
    assert "limited held to 1 CPUs by cpu.max" in weighed["message"]  # a quarter of 4


def test_numa_bind_passes_with_each_cgroups_memory_on_its_node():
    record, _ = run_scenario(catalog.get("numa_bind"), TWO_NODES, duration_s=5)
    assert record["verdict"] == "pass", record["findings"]
    for w in record["workers"]:
        node = w["cgroup_path"].removeprefix("node_")
        assert w["mems_allowed"] == node
        assert w["mempolicy"] == {"mode": "bind", "nodes": [int(node)]}
        assert w["numa_pages"] == {node: 64}
