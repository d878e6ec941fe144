"""The cached QEMU accepts the whole argv ktstr builds for the 252-vCPU max-cpu preset.

QEMU is started paused (``-S``) with the real kernel, topology, channel and
monitor, so it builds the machine (q35, the interrupt-remapping IOMMU, every
vCPU, the NUMA memory) and validates every option; the test then asks the
monitor how many vCPUs exist and quits.  Booting the guest to the end takes
more than 13 minutes under TCG on two host cores, so it is not done here.
"""

import json
import socket
import subprocess

import pytest

from ktstr.errors import KernelError
from ktstr.kernel.store import resolve
from ktstr.presets import preset
from ktstr.vm import qemu, qemu_fetch
from ktstr.vm.lifecycle import guarded_argv
from ktstr.vm.slots import vm_slot


def _ask(stream, sock: socket.socket, command: str) -> object:
    """Send one QMP command; its answer (events before it are skipped)."""
    sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
    for line in stream:
        message = json.loads(line)
        if "error" in message:
            raise AssertionError(f"QMP {command}: {message['error']}")
        if "return" in message:
            return message["return"]
    raise AssertionError(f"QEMU closed the monitor before answering {command}")


def test_cached_qemu_accepts_the_max_cpu_argv(tmp_path, monkeypatch):
    if qemu_fetch.newest_cached() is None:
        pytest.skip("no QEMU in the cache; 'ktstr qemu fetch' puts one there")
    try:
        kernel = resolve()
    except KernelError as err:
        pytest.skip(f"no kernel to load: {err}")
    monkeypatch.delenv("KTSTR_QEMU", raising=False)
    monkeypatch.delenv("KTSTR_TCG_THREAD", raising=False)
    topology = preset("max-cpu")
    initrd = tmp_path / "empty.cpio"
    initrd.write_bytes(b"")
    host_channel, guest_channel = socket.socketpair()
    host_qmp, guest_qmp = socket.socketpair()
    cfg = qemu.VmConfig(
        kernel.boot_path,
        str(initrd),
        topology,
        "tcg",
        channel_fd=guest_channel.fileno(),
        monitor_fd=guest_qmp.fileno(),
    )
    chosen = qemu.qemu_for(cfg)
    assert chosen.source == "cache" and chosen.capable, chosen
    argv = qemu.build_argv(cfg)
    assert argv[argv.index("-M") + 1] == "q35" and "intel-iommu,intremap=on,eim=on" in argv
    with vm_slot():
        proc = subprocess.Popen(
            guarded_argv([*argv, "-S"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=[guest_channel.fileno(), guest_qmp.fileno()],
            env=chosen.env(),
            start_new_session=True,
        )
        guest_channel.close()
        guest_qmp.close()
        try:
            host_qmp.settimeout(300)  # 252 vCPUs take ~10 s to create on a busy 2-core host
            with host_qmp.makefile("r") as stream:
                greeting = json.loads(stream.readline() or "{}")
                assert "QMP" in greeting, proc.stderr.read().decode(errors="replace")
                assert greeting["QMP"]["version"]["qemu"]["major"] >= 10
                _ask(stream, host_qmp, "qmp_capabilities")
                cpus = _ask(stream, host_qmp, "query-cpus-fast")
                assert len(cpus) == topology.cpus == 252
                assert _ask(stream, host_qmp, "query-status")["status"] == "prelaunch"
                _ask(stream, host_qmp, "quit")
            assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            host_channel.close()
            host_qmp.close()
