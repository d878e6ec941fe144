"""cgroup v2 controls and memory policy: declared, checked before boot, compiled."""

import pytest

from ktstr import CgroupDef, CpusetSpec, HoldSpec, MemPolicy, Op, Scenario, Step, Topology, run_defs
from ktstr.errors import ConfigError
from ktstr.guest import cgroups
from ktstr.scenario.plan import compile_plan
from tests.helpers import assert_one_sentence, ktstr

NUMA2 = Topology.parse("2n2l2c1t")


def first_ops(scenario: Scenario, topo: Topology = NUMA2) -> list[dict]:
    return compile_plan(scenario, topo)["steps"][0]["ops"]


def test_controls_compile_to_the_files_the_guest_writes_and_the_policy_to_the_spawn():
    cg = CgroupDef(
        "a",
        cpu_max=(50_000, 100_000),
        cpu_idle=False,
        memory_max="64M",
        memory_high=32 << 20,
        memory_low="1M",
        pids_max=16,
        io_weight=300,
        mems=(1,),
        mempolicy=MemPolicy("bind", (1,)),
    )
    add, spawn = first_ops(run_defs([cg]))
    assert add["controls"] == {
        "cpuset.mems": "1",
        "cpu.max": "50000 100000",
        "cpu.idle": "0",
        "memory.max": str(64 << 20),
        "memory.high": str(32 << 20),
        "memory.low": str(1 << 20),
        "pids.max": "16",
        "io.weight": "300",
    }
    assert set(add["controls"]) <= set(cgroups.CONTROL_FILES)
    assert spawn["mempolicy"] == ["bind", [1]]


def test_a_quota_alone_takes_the_default_period_and_set_controls_is_an_op():
    plan = compile_plan(
        Scenario(
            "s",
            "",
            [
                Step([Op.add_cgroup(CgroupDef("a", cpu_max=20_000))], HoldSpec(frac=0.5)),
                Step(
                    [Op.set_cpu_max("a", 30_000, 60_000), Op.set_controls("a", pids_max=8)],
                    HoldSpec(frac=0.5),
                ),
            ],
            duration_s=4,
        ),
        NUMA2,
    )
    assert plan["steps"][0]["ops"][0]["controls"] == {"cpu.max": "20000 100000"}
    assert plan["steps"][1]["ops"] == [
        {"op": "set_controls", "path": "a", "controls": {"cpu.max": "30000 60000"}},
        {"op": "set_controls", "path": "a", "controls": {"pids.max": "8"}},
    ]


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda: CgroupDef("a", cpu_max=(50_000, 2_000_000)), "period 2000000 us is outside"),
        (lambda: CgroupDef("a", cpu_max=(500, 100_000)), "quota 500 us is below"),
        (lambda: CgroupDef("a", cpu_max="half"), "is not a quota or a (quota_us, period_us)"),
        (lambda: CgroupDef("a", memory_max="64Q"), "memory_max '64Q' is not a size"),
        (lambda: CgroupDef("a", memory_low="2G", memory_max="1G"), "not in rising order"),
        (lambda: CgroupDef("a", cpu_idle=2), "cpu_idle 2 is not True or False"),
        (lambda: CgroupDef("a", pids_max=0), "pids_max 0 is outside"),
        (lambda: CgroupDef("a", io_weight=20_000), "io_weight 20000 is outside"),
        (lambda: CgroupDef("a", mems=()), "mems is empty"),
        (lambda: CgroupDef("a", mempolicy="bind"), "is not a MemPolicy"),
        (lambda: MemPolicy("spread", (0,)), "unknown memory policy 'spread'"),
        (lambda: MemPolicy("preferred", (0, 1)), "preferred takes one node"),
        (lambda: MemPolicy("local", (0,)), "local takes no nodes"),
        (lambda: MemPolicy("bind"), "bind needs nodes"),
        (lambda: Op.set_controls("a", cpu_weight=5), "no control 'cpu_weight'"),
        (lambda: Op.set_controls("a"), "sets nothing"),
    ],
)
def test_bad_controls_are_one_sentence_when_declared(make, says):
    with pytest.raises(ConfigError) as err:
        make()
    assert says in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("cg", "says"),
    [
        (CgroupDef("a", cpu_max=(500_000, 100_000)), "5 CPUs, more than the 4 it may use"),
        (CgroupDef("a", mems=(2,)), "cpuset.mems names node(s) 2"),
        (
            CgroupDef("a", mems=(0,), mempolicy=MemPolicy("interleave", (0, 1))),
            "names node(s) 1, outside the nodes it may use (0)",
        ),
        (CgroupDef("a", mempolicy=MemPolicy("bind", (3,))), "names node(s) 3"),
        (CgroupDef("a", workers=4, pids_max=3), "pids.max 3 cannot hold its 4 workers"),
        (
            CgroupDef("p", workers=0, mems=(1,), children=(CgroupDef("c", mems=(0,)),)),
            "outside the nodes its parent may use (1)",
        ),
    ],
)
def test_controls_the_topology_or_the_cgroup_cannot_honour_fail_before_boot(cg, says):
    with pytest.raises(ConfigError) as err:
        first_ops(run_defs([cg]))
    assert says in str(err.value)


def test_a_later_quota_is_checked_against_the_cpus_the_cgroup_may_use_then():
    half = HoldSpec(frac=0.5)
    scenario = Scenario(
        "s",
        "",
        [
            Step([Op.add_cgroup(CgroupDef("a", cpuset=CpusetSpec.numa(0)))], half),
            Step([Op.set_cpu_max("a", 300_000)], half),
        ],
        duration_s=4,
    )
    with pytest.raises(ConfigError, match="3 CPUs, more than the 2 it may use"):
        compile_plan(scenario, NUMA2)


def test_the_guest_enables_each_controller_down_the_path_and_reads_the_files_back(
    tmp_path, monkeypatch
):
    base = tmp_path / "ktstr"
    (base / "p" / "c").mkdir(parents=True)
    for d in (base, base / "p"):
        (d / "cgroup.controllers").write_text("cpu cpuset memory pids io\n")
    monkeypatch.setattr(cgroups, "CG_BASE", str(base))
    got = cgroups.set_controls("p/c", {"cpu.max": "50000 100000", "memory.max": "1024"})
    assert got == {"cpu.max": "50000 100000", "memory.max": "1024"}
    for d in (base, base / "p"):
        assert (d / "cgroup.subtree_control").read_text() == "+cpu +memory\n"
    with pytest.raises(ValueError, match="not one a plan may set"):
        cgroups.set_controls("p/c", {"cgroup.procs": "1"})


def test_a_fraction_quota_scales_with_the_cpus_the_cgroup_may_use():
    def quota(topo: str, cg: CgroupDef) -> str:
        return first_ops(run_defs([cg]), Topology.parse(topo))[0]["controls"]["cpu.max"]

    quarter = CgroupDef("a", cpu_max=0.25)
    assert quota("1n2l2c1t", quarter) == "100000 100000"
    assert quota("1n2l4c2t", quarter) == "400000 100000"
    pinned = CgroupDef("a", cpu_max=0.5, cpuset=CpusetSpec.llc(0))
    assert quota("1n2l4c2t", pinned) == "400000 100000"
    with pytest.raises(ConfigError, match=r"cpu_max 1\.5 is not a fraction of its CPUs"):
        CgroupDef("a", cpu_max=1.5)


@pytest.mark.parametrize(
    ("declare", "says"),
    [
        ("CgroupDef('a', mempolicy=MemPolicy('bind', (1,)))", "names node(s) 1"),
        ("CgroupDef('a', cpu_max=(900_000, 100_000))", "9 CPUs, more than the 4 it may use"),
        ("CgroupDef('a', mems=(1,))", "cpuset.mems names node(s) 1"),
    ],
)
def test_the_cli_refuses_bad_controls_in_one_sentence_before_boot(tmp_path, declare, says):
    user = tmp_path / "mine.py"
    user.write_text(
        "from ktstr import CgroupDef, MemPolicy, run_defs\n"
        f"S = run_defs([{declare}], name='mine')\n"
    )
    proc = ktstr("run", f"{user}::S", "--topology", "1n2l2c1t")
    assert_one_sentence(proc, says)
