import pytest

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
    with pytest.raises(ConfigError, match="3 LLCs"):
        C.llc(3).resolve(ODD3)


def test_cpuset_partitions_cover_without_overlap():
    parts = [C.disjoint(i, 3).resolve(ODD5) for i in range(3)]
    assert sorted(c for p in parts for c in p) == list(range(15))
    assert C.overlap(1, 3, 0.5).resolve(ODD5)[0] < parts[1][0]
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
                assert compile_plan(scenario, t)["workers"]
    with pytest.raises(ConfigError, match="ktstr scenarios"):
        get("nope")
