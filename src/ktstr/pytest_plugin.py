"""The ktstr pytest plugin: markers and options shared by every ktstr test run.

Registered through the ``pytest11`` entry point, so any project with
ktstr installed gets the ``vm`` marker and ``--ktstr-kernel``.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ktstr")
    group.addoption(
        "--ktstr-kernel",
        default=None,
        help="kernel for VM tests (path or cached release; sets KTSTR_KERNEL)",
    )
    group.addoption(
        "--ktstr-accel",
        default=None,
        choices=["auto", "kvm", "tcg"],
        help="accelerator for VM tests (sets KTSTR_ACCEL)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: boots a real kernel under QEMU (slow)")
    if config.getoption("--ktstr-kernel"):
        os.environ["KTSTR_KERNEL"] = config.getoption("--ktstr-kernel")
    if config.getoption("--ktstr-accel"):
        os.environ["KTSTR_ACCEL"] = config.getoption("--ktstr-accel")
