"""Boot real kernels under QEMU and check the guest sees exactly the declared topology."""

import json
from pathlib import Path

import pytest

from tests.helpers import ktstr

# What each topology must look like in the guest, written out by hand (not computed by
# the code under test): CPUs numbered thread-fastest, then core, LLC and node.
LAYOUTS = {
    "1n1l1c1t": {"cpus": 1, "numa_nodes": [[0]], "llcs": [[0]], "smt_siblings": [[0]]},
    "1n2l2c2t": {
        "cpus": 8,
        "numa_nodes": [[0, 1, 2, 3, 4, 5, 6, 7]],
        "llcs": [[0, 1, 2, 3], [4, 5, 6, 7]],
        "smt_siblings": [[0, 1], [2, 3], [4, 5], [6, 7]],
    },
    "2n4l2c1t": {
        "cpus": 8,
        "numa_nodes": [[0, 1, 2, 3], [4, 5, 6, 7]],
        "llcs": [[0, 1], [2, 3], [4, 5], [6, 7]],
        "smt_siblings": [[0], [1], [2], [3], [4], [5], [6], [7]],
    },
}


@pytest.mark.parametrize("topology", list(LAYOUTS))
def test_probe_matches(topology):
    proc = ktstr("vm", "probe", "--topology", topology, "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["match"] is True, proc.stdout
    assert result["accel"] in ("kvm", "tcg")
    expected = LAYOUTS[topology]
    assert result["requested"] == expected
    assert result["observed"] == expected
    assert set(result["observed"]) == {"cpus", "numa_nodes", "llcs", "smt_siblings"}
    assert result["sched_ext"]["present"] is True
    assert result["timings_s"]["qemu_start_to_agent_ready"] > 0
    assert result["timings_s"]["total"] >= result["timings_s"]["qemu_start_to_agent_ready"]


def test_probe_table_for_humans():
    proc = ktstr("vm", "probe", "--topology", "1n2l1c1t")
    assert proc.returncode == 0, proc.stderr
    assert "requested" in proc.stdout and "observed" in proc.stdout
    assert "result: MATCH" in proc.stdout
    assert "accelerator:" in proc.stdout


def test_kernel_without_sched_ext_reported(no_sched_ext_kernel):
    info = ktstr("kernel", "info", no_sched_ext_kernel, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["sched_ext"] is False
    text = ktstr("kernel", "info", no_sched_ext_kernel).stdout
    assert "sched_ext:  no" in text
    proc = ktstr("vm", "probe", "--kernel", no_sched_ext_kernel, "--topology", "1n1l2c1t", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["sched_ext"] == {"present": False}
    assert result["kernel"] == no_sched_ext_kernel
    human = ktstr("vm", "probe", "--kernel", no_sched_ext_kernel, "--topology", "1n1l1c1t")
    assert "sched_ext ABSENT" in human.stdout


def test_kernel_path_to_bzimage_and_vmlinux_both_boot():
    listing = json.loads(ktstr("kernel", "list", "--json").stdout)
    vmlinux = Path(next(k for k in listing if k["sched_ext"])["boot_path"])
    bzimage = vmlinux.with_name("vmlinuz")
    assert json.loads(ktstr("kernel", "info", str(bzimage), "--json").stdout)["boot_method"] == (
        "PVH ELF"
    )
    for path in (vmlinux, bzimage):
        proc = ktstr("vm", "probe", "--kernel", str(path), "--topology", "1n1l1c1t", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["match"] is True
