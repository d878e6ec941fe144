"""The accelerator choice is backed by a real boot, not by the presence of /dev/kvm."""

import os
from pathlib import Path

import pytest

from ktstr.kernel.store import resolve
from ktstr.vm import accel


@pytest.mark.skipif(
    not Path("/sys/module/kvm_pvm").exists() or not os.path.exists("/dev/kvm"),
    reason="only a kvm_pvm host shows KVM present but unable to boot a guest",
)
def test_boot_probe_detects_unusable_kvm():
    failure = accel.boot_probe(resolve().boot_path)
    assert failure is not None and "KVM test boot" in failure


def test_auto_choice_says_why():
    chosen = accel.choose("auto", resolve().boot_path)
    assert chosen.name in ("kvm", "tcg")
    assert chosen.reason
    assert chosen.line().startswith(f"accelerator: {chosen.name} (")
