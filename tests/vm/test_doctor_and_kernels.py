"""The host-facing commands, against the real installed environment."""

import json

from tests.helpers import ktstr


def test_doctor_reports_every_piece_and_passes_after_setup():
    proc = ktstr("doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("qemu", "busybox", "kernel", "accelerator", "disk", "memory"):
        assert name in proc.stdout
    assert any(ln.startswith("accelerator") and " ok " in ln for ln in proc.stdout.splitlines())


def test_kernel_list_and_info_agree():
    listing = json.loads(ktstr("kernel", "list", "--json").stdout)
    assert any(k["sched_ext"] for k in listing)
    newest = next(k for k in listing if k["sched_ext"])
    info = json.loads(ktstr("kernel", "info", newest["release"], "--json").stdout)
    assert info["release"] == newest["release"]
    assert info["btf"] is True and info["schedstats"] is True
    assert info["boot_method"] == "PVH ELF"
    text = ktstr("kernel", "list").stdout
    assert newest["release"] in text and "sched_ext" in text


def test_fetch_is_idempotent():
    proc = ktstr("kernel", "fetch")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("already cached:")
