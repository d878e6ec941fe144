"""Commands that answer before any VM boots: refusals, skips, and the VM suite's coverage.

They were in the VM tier but need no kernel, no QEMU and no cache.
"""

from pathlib import Path

from ktstr.scenario.catalog import CATALOG
from tests.helpers import assert_one_sentence, ktstr
from tests.vm.test_scenarios import CPU_SCENARIOS

VM_TESTS = Path(__file__).resolve().parents[1] / "vm"


def test_every_catalog_scenario_is_tested_in_a_vm():
    io_scenarios = {"io_wakeup", "io_convoy"}  # tests/vm/test_disks.py runs them
    disk_tests = (VM_TESTS / "test_disks.py").read_text()
    assert all(f'"run", "{name}"' in disk_tests for name in io_scenarios)
    control_scenarios = {"throttled", "numa_bind"}  # tests/vm/test_cgroup_controls.py
    control_tests = (VM_TESTS / "test_cgroup_controls.py").read_text()
    assert all(f'catalog.get("{name}")' in control_tests for name in control_scenarios)
    payload_scenarios = {"stress"}  # tests/vm/test_payloads.py
    payload_tests = (VM_TESTS / "test_payloads.py").read_text()
    assert all(f'"run", "{name}"' in payload_tests for name in payload_scenarios)
    assert set(CATALOG) == set(CPU_SCENARIOS) | io_scenarios | control_scenarios | payload_scenarios


def test_skip_on_a_topology_the_scenario_cannot_use():
    proc = ktstr("run", "steady_llc", "--topology", "1n1l2c1t")
    assert proc.returncode == 0, proc.stderr
    assert "scenario steady_llc on 1n1l2c1t: SKIP" in proc.stdout
    assert "needs at least 2 LLCs, the topology has 1" in proc.stdout


def test_match_everything_expect_error_is_refused():
    assert_one_sentence(
        ktstr("run", "steady", "--scheduler", "scx_simple", "--expect-error", ".*"),
        "matches any text",
    )


def test_gauntlet_refuses_a_backing_file_parallel_vms_would_share(tmp_path):
    shared = ktstr(
        "gauntlet", "io_convoy", "--presets", "tiny-2llc,tiny-smt", "--jobs", "2",
        "--disk", f"32MiB,backing={tmp_path / 'shared.img'}",
    )  # fmt: skip
    assert_one_sentence(shared, "2 VMs would share", "--jobs 1")
    assert not (tmp_path / "shared.img").exists()  # refused before any VM booted


def test_a_guest_bigger_than_the_hosts_free_memory_is_refused_before_boot(monkeypatch, tmp_path):
    monkeypatch.setenv("KTSTR_RUNS_DIR", str(tmp_path))
    too_big = 64 * 1024 * 1024  # MiB: 64 TiB
    for argv in (
        ("run", "steady", "--topology", "1n1l2c1t", "--memory", str(too_big)),
        ("vm", "probe", "--topology", "1n1l2c1t", "--memory", str(too_big)),
    ):
        proc = ktstr(*argv)
        assert_one_sentence(proc, "MiB of guest RAM and this host has", "free memory")
