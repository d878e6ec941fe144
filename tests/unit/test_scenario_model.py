import pytest

from ktstr import wire
from ktstr.errors import ConfigError
from ktstr.scenario.catalog import CATALOG, get
from ktstr.scenario.cpuset import CpusetSpec as C
from ktstr.scenario.model import CgroupDef, Fifo, HoldSpec, Op, Policy, Scenario, Step
from ktstr.scenario.plan import compile_plan
from ktstr.scenario.work import WorkSpec, fan_out, pipe_pingpong, sequence, spin
from ktstr.topology import Topology

ODD3 = Topology.parse("1n3l3c1t").layout()
ODD5 = Topology.parse("1n5l3c1t").layout()
SMT = Topology.parse("1n2l2c2t").layout()


def test_cpuset_llc_numa_on_odd_and_smt_topologies():
    assert C.llc(2).resolve(ODD3) == [6, 7, 8]
    assert C.llc(4).resolve(ODD5) == [12, 13, 14]
    assert C.llc(1).resolve(SMT) == [4, 5, 6, 7]
    assert C.numa(0).resolve(ODD5) == list(range(15))
    two_nodes = Topology.parse("2n4l2c1t").layout()
    assert C.numa(1).resolve(two_nodes) == [4, 5, 6, 7]
    assert C.numa(0).resolve(two_nodes, usable=[2, 3, 4]) == [2, 3]
    with pytest.raises(ConfigError, match="2 NUMA nodes"):
        C.numa(2).resolve(two_nodes)
    with pytest.raises(ConfigError, match="3 LLCs"):
        C.llc(3).resolve(ODD3)


def test_cpuset_partitions_cover_without_overlap():
    parts = [C.disjoint(i, 3).resolve(ODD5) for i in range(3)]
    assert sorted(c for p in parts for c in p) == list(range(15))
    assert parts[1] == [5, 6, 7, 8, 9]
    # partition 1 of 3 (5 CPUs) grown by half its size (3 CPUs) on each side, clipped
    assert C.overlap(1, 3, 0.5).resolve(ODD5) == list(range(2, 13))
    assert C.overlap(0, 3, 0.5).resolve(ODD5) == list(range(0, 8))
    assert C.overlap(1, 3, 0.0).resolve(ODD5) == parts[1]
    assert C.range(0, 0.25).resolve(SMT) == [0, 1]
    assert C.exact({1, 3}).resolve(SMT) == [1, 3]


def test_cpuset_errors_are_sentences():
    with pytest.raises(ConfigError, match="4 usable CPUs cannot hold 8 disjoint partitions"):
        C.disjoint(0, 8).resolve(Topology.parse("1n1l4c1t").layout())
    with pytest.raises(ConfigError, match="lacks"):
        C.exact({99}).resolve(SMT)
    with pytest.raises(ConfigError):
        C.range(0.5, 0.2)


def test_work_validation():
    with pytest.raises(ConfigError, match="unknown work kind"):
        WorkSpec("teleport")
    with pytest.raises(ConfigError, match="whole number >= 1"):
        WorkSpec("bursty", {"burst_ms": 0})
    with pytest.raises(ConfigError, match="groups of 2"):
        pipe_pingpong().check_count(3, "cg")
    fan_out(3).check_count(8, "cg")
    with pytest.raises(ConfigError, match="groups of 4"):
        fan_out(3).check_count(6, "cg")
    with pytest.raises(ConfigError):
        sequence([pipe_pingpong()])
    assert sequence([spin()]).to_wire()["params"]["phases"][0]["kind"] == "spin"


def test_cgroup_and_policy_validation():
    with pytest.raises(ConfigError, match="cpu.weight"):
        CgroupDef("a", weight=0)
    with pytest.raises(ConfigError, match="children"):
        CgroupDef("a", workers=2, children=(CgroupDef("b"),))
    with pytest.raises(ConfigError):
        Policy("fifo", 0)
    assert Fifo(10).priority == 10


def test_plan_resolves_children_against_parent_cpuset():
    scenario = Scenario(
        "t",
        "",
        [
            Step(
                [
                    Op.add_cgroup(
                        CgroupDef(
                            "p",
                            workers=0,
                            cpuset=C.llc(1),
                            children=(CgroupDef("c", cpuset=C.range(0, 0.5)),),
                        )
                    )
                ]
            )
        ],
    )
    plan = compile_plan(scenario, Topology.parse("1n2l2c2t"))
    ops = plan["steps"][0]["ops"]
    assert ops[0] == {"op": "add_cgroup", "path": "p", "cpus": [4, 5, 6, 7], "weight": None}
    assert ops[1]["path"] == "p/c" and ops[1]["cpus"] == [4, 5]
    assert [w["cgroup"] for w in plan["workers"]] == ["p/c", "p/c"]


def test_plan_errors_before_boot():
    topo = Topology.parse("1n1l2c1t")
    with pytest.raises(ConfigError, match="no single cgroup named"):
        compile_plan(Scenario("t", "", [Step([Op.freeze("ghost")])]), topo)
    too_long = Scenario("t", "", [Step([], HoldSpec(seconds=10))], duration_s=5)
    with pytest.raises(ConfigError, match="after the 5.0 s duration"):
        compile_plan(too_long, topo)
    with pytest.raises(ConfigError, match="nothing is outside"):
        compile_plan(
            Scenario(
                "t", "", [Step([Op.add_cgroup(CgroupDef("a")), Op.debug_escape_cpuset("a", 0)])]
            ),
            topo,
        )


def test_workers_pct_rounds_to_groups():
    scenario = Scenario(
        "t",
        "",
        [Step([Op.add_cgroup(CgroupDef("a", workers=0, workers_pct=1.5, work=pipe_pingpong()))])],
    )
    plan = compile_plan(scenario, Topology.parse("1n1l3c1t"))
    assert len(plan["workers"]) == 6  # 1.5 * 3 = 4.5 -> 5 -> pairs of 2 -> 6


def test_catalog_compiles_everywhere_it_can_run():
    assert len(CATALOG) >= 12
    for topo in ("1n1l2c1t", "1n2l2c1t", "1n3l3c1t", "2n4l2c2t"):
        t = Topology.parse(topo)
        for scenario in CATALOG.values():
            if scenario.requires.reason(t.layout()) is None:
                plan = compile_plan(scenario, t)
                assert plan["workers"]
                assert wire.loads(wire.dumps(plan)) == plan  # what the guest reads is the plan
    with pytest.raises(ConfigError, match="ktstr scenarios"):
        get("nope")


def _looped(ops, hold_s=6.0, every_s=2.0, first=()):
    steps = [Step(list(first), HoldSpec(seconds=0.5))] if first else []
    steps.append(Step(ops, HoldSpec(seconds=hold_s, loop_interval_s=every_s)))
    return Scenario("t", "", steps, duration_s=hold_s + (0.5 if first else 0))


def test_loops_are_unrolled_so_each_round_sees_the_state_the_last_one_left():
    topo = Topology.parse("1n2l2c1t")
    setup = [
        Op.add_cgroup(CgroupDef("a", cpuset=C.llc(0))),
        Op.add_cgroup(CgroupDef("b", cpuset=C.llc(1))),
    ]
    plan = compile_plan(_looped([Op.swap_cpusets("a", "b")], first=setup), topo)
    step = plan["steps"][1]
    rounds = [step["ops"]] + [r["ops"] for r in step["repeats"]]
    assert [r["at_s"] for r in step["repeats"]] == [2.5, 4.5]
    assert [r[0]["cpus"] for r in rounds] == [[2, 3], [0, 1], [2, 3]]  # a swaps back and forth

    plan = compile_plan(_looped([Op.spawn_workers("a", 2)], first=setup), topo)
    step = plan["steps"][1]
    ids = [step["ops"][0]["ids"]] + [r["ops"][0]["ids"] for r in step["repeats"]]
    assert ids == [[4, 5], [6, 7], [8, 9]]
    assert len(plan["workers"]) == 10

    plan = compile_plan(_looped([Op.stop_workers("a", 1)], hold_s=4.0, first=setup), topo)
    stopped = [plan["steps"][1]["ops"][0]["ids"], plan["steps"][1]["repeats"][0]["ops"][0]["ids"]]
    assert stopped == [[1], [0]]  # the newest first, never the same worker twice
    with pytest.raises(ConfigError, match="has 0 running worker"):
        compile_plan(_looped([Op.stop_workers("a", 1)], first=setup), topo)
    with pytest.raises(ConfigError, match="added twice"):
        compile_plan(_looped([Op.add_cgroup(CgroupDef("c"))]), topo)
    with pytest.raises(ConfigError, match="faster than the guest"):
        compile_plan(_looped([Op.swap_cpusets("a", "b")], every_s=0.01, first=setup), topo)
    with pytest.raises(ConfigError, match="more than 2000 rounds"):
        compile_plan(_looped([Op.swap_cpusets("a", "b")], 300, 0.1, first=setup), topo)


def test_every_op_compiles_to_what_the_guest_runs():
    topo = Topology.parse("1n2l2c1t")
    ops = [
        Op.add_cgroup(CgroupDef("a", workers=2, nice=5, policy=Fifo(3))),
        Op.add_cgroup(CgroupDef("b", workers=2, affinity=C.exact({3}))),
        Op.set_weight("a", 300),
        Op.set_affinity("a", C.range(0, 0.5)),
        Op.clear_cpuset("a"),
        Op.freeze("b"),
        Op.unfreeze("b"),
        Op.move_tasks("b", "a"),
        Op.remove_cgroup("b"),
    ]
    plan = compile_plan(Scenario("t", "", [Step(ops)]), topo)
    got = plan["steps"][0]["ops"]
    assert [o["op"] for o in got] == [
        "add_cgroup",
        "spawn",
        "add_cgroup",
        "spawn",
        "set_weight",
        "set_affinity",
        "set_cpuset",
        "freeze",
        "unfreeze",
        "move_tasks",
        "remove_cgroup",
    ]
    assert got[1]["nice"] == 5 and got[1]["policy"] == ["fifo", 3, 0, 0, 0]
    assert got[3]["affinity"] == [3] and got[5]["cpus"] == [0, 1]
    assert got[6]["cpus"] is None and got[4]["weight"] == 300
    with pytest.raises(ConfigError, match="outside 1..10000"):
        compile_plan(Scenario("t", "", [Step(ops[:1] + [Op.set_weight("a", 0)])]), topo)


def test_ext_and_deadline_policies_reach_the_plan_and_bad_ones_are_refused():
    from ktstr.scenario.model import EXT, Deadline, Policy

    topo = Topology.parse("1n2l2c1t")
    ops = [
        Op.add_cgroup(CgroupDef("e", workers=1, policy=EXT)),
        Op.add_cgroup(CgroupDef("d", workers=1, policy=Deadline(10_000, 50_000, 100_000))),
    ]
    got = compile_plan(Scenario("t", "", [Step(ops)]), topo)["steps"][0]["ops"]
    assert got[1]["policy"] == ["ext", 0, 0, 0, 0]
    assert got[3]["policy"] == ["deadline", 0, 10_000_000, 50_000_000, 100_000_000]
    assert Deadline(10, 20).period_us == 20
    with pytest.raises(ConfigError, match="runtime <= deadline <= period"):
        Deadline(60_000, 50_000, 100_000)
    with pytest.raises(ConfigError, match="takes no runtime"):
        Policy("normal", runtime_us=5)
    with pytest.raises(ConfigError, match="unknown policy"):
        Policy("realtime")


def test_fixture_knobs_are_checked_when_declared_and_compile_to_a_control_file_line():
    from ktstr.fixture_sched import CONTROL_FILE

    with pytest.raises(ConfigError, match="has no knob 'pilee'"):
        Op.fixture_knob("pilee", 0)
    with pytest.raises(ConfigError, match="not one line"):
        Op.fixture_knob("pile", "0\nerror_after_s=1")
    plan = compile_plan(
        Scenario("t", "", [Step([Op.add_cgroup(CgroupDef("a")), Op.fixture_knob("pile", 0)])]),
        Topology.parse("1n2l2c1t"),
    )
    (knob,) = [o for o in plan["steps"][0]["ops"] if o["op"] == "fixture_knob"]
    assert knob == {"op": "fixture_knob", "file": CONTROL_FILE, "line": "pile=0"}
    assert Op.fixture_knob("idle_waste", True).args == ("idle_waste", "on")
