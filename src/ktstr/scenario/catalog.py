"""Canned scenarios: ``ktstr scenarios`` lists them, ``ktstr run NAME`` runs one."""

from __future__ import annotations

from ktstr.disk import Disk, Throttle
from ktstr.errors import ConfigError
from ktstr.payloads.catalog import STRESS_MIX
from ktstr.scenario.controls import MemPolicy
from ktstr.scenario.cpuset import CpusetSpec as C
from ktstr.scenario.model import CgroupDef, HoldSpec, Op, Requires, Scenario, Step
from ktstr.scenario.work import (
    bursty,
    cache_pressure,
    fan_out,
    io_convoy,
    io_rand_read,
    io_sync,
    io_sync_write,
    mixed,
    pipe_pingpong,
    spin,
    yield_heavy,
)


def _hold(frac: float) -> HoldSpec:
    return HoldSpec(frac=frac)


def _build() -> dict[str, Scenario]:
    # Contention is the point of most scenarios: worker counts scale with the CPUs a
    # cgroup may use (workers_pct), so a 16-vCPU guest is as contended as a 4-vCPU one.
    two = [
        CgroupDef("cg_0", workers=0, workers_pct=1.0),
        CgroupDef("cg_1", workers=0, workers_pct=1.0),
    ]
    nested = CgroupDef(
        "parent",
        workers=0,
        children=(
            CgroupDef("child_0", workers=0, workers_pct=0.5),
            CgroupDef("child_1", workers=0, workers_pct=0.5),
        ),
    )
    scenarios = [
        Scenario(
            "steady",
            "two cgroups of spinners, one per CPU each, held for the whole run",
            [Step([Op.add_cgroup(d) for d in two])],
        ),
        Scenario(
            "steady_llc",
            "one cgroup of spinners per LLC, two per CPU, each confined to its LLC",
            [
                Step(
                    [
                        Op.add_cgroup(
                            CgroupDef("llc_0", workers=0, workers_pct=2.0, cpuset=C.llc(0))
                        ),
                        Op.add_cgroup(
                            CgroupDef("llc_1", workers=0, workers_pct=2.0, cpuset=C.llc(1))
                        ),
                    ]
                )
            ],
            requires=Requires(min_llcs=2),
        ),
        Scenario(
            "oversubscribed",
            "two spinners per CPU in one cgroup",
            [Step([Op.add_cgroup(CgroupDef("cg_0", workers=0, workers_pct=2.0))])],
        ),
        Scenario(
            "cpuset_apply",
            "two cgroups start unrestricted, then get disjoint cpusets",
            [
                Step([Op.add_cgroup(d) for d in two], _hold(0.5)),
                Step(
                    [
                        Op.set_cpuset("cg_0", C.disjoint(0, 2)),
                        Op.set_cpuset("cg_1", C.disjoint(1, 2)),
                    ],
                    _hold(0.5),
                ),
            ],
            requires=Requires(min_cpus=2),
        ),
        Scenario(
            "cpuset_clear",
            "disjoint cpusets, then cleared halfway",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("cg_0", cpuset=C.disjoint(0, 2))),
                        Op.add_cgroup(CgroupDef("cg_1", cpuset=C.disjoint(1, 2))),
                    ],
                    _hold(0.5),
                ),
                Step([Op.clear_cpuset("cg_0"), Op.clear_cpuset("cg_1")], _hold(0.5)),
            ],
            requires=Requires(min_cpus=2),
        ),
        Scenario(
            "cpuset_resize",
            "a cgroup's cpuset shrinks to a quarter, then grows back",
            [
                Step(
                    [Op.add_cgroup(CgroupDef("cg_0", workers=0, workers_pct=1.0, cpuset=C.all()))],
                    _hold(0.3),
                ),
                Step([Op.set_cpuset("cg_0", C.range(0, 0.25))], _hold(0.4)),
                Step([Op.set_cpuset("cg_0", C.all())], _hold(0.3)),
            ],
        ),
        Scenario(
            "cgroup_add",
            "a second cgroup of spinners joins halfway",
            [Step([Op.add_cgroup(two[0])], _hold(0.5)), Step([Op.add_cgroup(two[1])], _hold(0.5))],
        ),
        Scenario(
            "cgroup_remove",
            "one of two cgroups is removed halfway",
            [
                Step([Op.add_cgroup(d) for d in two], _hold(0.5)),
                Step([Op.remove_cgroup("cg_1")], _hold(0.5)),
            ],
        ),
        Scenario(
            "affinity_change",
            "workers' affinity narrows to the first half of the CPUs",
            [
                Step([Op.add_cgroup(CgroupDef("cg_0", workers=0, workers_pct=1.0))], _hold(0.5)),
                Step([Op.set_affinity("cg_0", C.range(0, 0.5))], _hold(0.5)),
            ],
            requires=Requires(min_cpus=2),
        ),
        Scenario(
            "affinity_pinned",
            "each of two cgroups pinned to one CPU",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("cg_0", affinity=C.exact({0}))),
                        Op.add_cgroup(CgroupDef("cg_1", affinity=C.exact({1}))),
                    ]
                )
            ],
            requires=Requires(min_cpus=2),
        ),
        Scenario(
            "mixed_workloads",
            "spinners, bursty sleepers, yielders and pipe ping-pong",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("spin", workers=0, workers_pct=1.0, work=spin())),
                        Op.add_cgroup(CgroupDef("bursty", workers=2, work=bursty(5, 5))),
                        Op.add_cgroup(CgroupDef("yield", workers=2, work=yield_heavy())),
                        Op.add_cgroup(CgroupDef("pingpong", workers=2, work=pipe_pingpong())),
                    ]
                )
            ],
        ),
        Scenario(
            "nested_steady",
            "nested cgroups: two children under one parent, plus a sibling",
            [
                Step(
                    [
                        Op.add_cgroup(nested),
                        Op.add_cgroup(CgroupDef("sibling", workers=0, workers_pct=1.0)),
                    ]
                )
            ],
        ),
        Scenario(
            "nested_task_move",
            "all tasks of one child move to its sibling halfway",
            [
                Step(
                    [Op.add_cgroup(nested)],
                    _hold(0.5),
                ),
                Step([Op.move_tasks("child_0", "child_1")], _hold(0.5)),
            ],
        ),
        Scenario(
            "weights",
            "two cgroups of spinners with cpu.weight 100 and 300, oversubscribed",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("light", workers=0, workers_pct=1.0, weight=100)),
                        Op.add_cgroup(CgroupDef("heavy", workers=0, workers_pct=1.0, weight=300)),
                    ]
                )
            ],
        ),
        Scenario(
            "wake_chain",
            "pipe ping-pong pairs and a fan-out waker with three wakees",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("pairs", workers=4, work=pipe_pingpong())),
                        Op.add_cgroup(CgroupDef("fan", workers=4, work=fan_out(3))),
                    ]
                )
            ],
        ),
        Scenario(
            "host_contention",
            "cache-thrashing and fsync-heavy workers next to spinners",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("cache", workers=2, work=cache_pressure())),
                        Op.add_cgroup(CgroupDef("io", workers=2, work=io_sync())),
                        Op.add_cgroup(CgroupDef("spin", workers=2, work=mixed())),
                    ]
                )
            ],
        ),
        Scenario(
            "io_wakeup",
            "spinners on every CPU next to readers and fsync writers blocked on a 200-IOPS disk",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("cpu", workers=0, workers_pct=1.0)),
                        Op.add_cgroup(CgroupDef("readers", workers=2, work=io_rand_read())),
                        Op.add_cgroup(CgroupDef("syncers", workers=2, work=io_sync_write())),
                    ]
                )
            ],
            disks=(Disk("64MiB", throttle=Throttle(iops=200)),),
        ),
        Scenario(
            "io_convoy",
            "four workers queue small direct I/Os on one hot region of a 100-IOPS disk, "
            "next to spinners",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("cpu", workers=0, workers_pct=1.0)),
                        Op.add_cgroup(CgroupDef("convoy", workers=4, work=io_convoy())),
                    ]
                )
            ],
            disks=(Disk("16MiB", throttle=Throttle(iops=100)),),
        ),
        Scenario(
            "throttled",
            "two cgroups of spinners, one per CPU each; cpu.max holds one to a quarter "
            "of the CPUs, so the other gets what it leaves",
            [
                Step(
                    [
                        Op.add_cgroup(
                            CgroupDef("limited", workers=0, workers_pct=1.0, cpu_max=0.25)
                        ),
                        Op.add_cgroup(CgroupDef("free", workers=0, workers_pct=1.0)),
                    ]
                )
            ],
        ),
        Scenario(
            "numa_bind",
            "one cgroup per node of the first two NUMA nodes: its CPUs, its memory "
            "(cpuset.mems) and its workers' memory policy (bind) on that node, each worker "
            "sweeping a 1 MiB working set",
            [
                Step(
                    [
                        Op.add_cgroup(
                            CgroupDef(
                                f"node_{i}",
                                workers=0,
                                workers_pct=1.0,
                                work=cache_pressure(1024, 64),
                                cpuset=C.numa(i),
                                mems=(i,),
                                mempolicy=MemPolicy("bind", (i,)),
                            )
                        )
                        for i in range(2)
                    ]
                )
            ],
            requires=Requires(min_numa_nodes=2),
        ),
        Scenario(
            "stress",
            "stress-ng's cpu, fork, affinity and context-switch stressors (one each per CPU) "
            "next to one spinner per CPU; each stressor must make progress and stress-ng "
            "must exit 0",
            [
                Step(
                    [
                        Op.add_cgroup(CgroupDef("spin", workers=0, workers_pct=1.0)),
                        Op.add_cgroup(CgroupDef("stress", workers=0, payload=STRESS_MIX)),
                    ]
                )
            ],
        ),
    ]
    return {s.name: s for s in scenarios}


CATALOG = _build()


def get(name: str) -> Scenario:
    if name not in CATALOG:
        raise ConfigError(
            f"no scenario named {name!r}",
            f"run 'ktstr scenarios' to list them ({', '.join(CATALOG)})",
        )
    return CATALOG[name]
