"""A user's scenario file, include files and ``shell --exec``, in real VMs."""

import os
from pathlib import Path

from tests.helpers import ktstr
from tests.vm.conftest import qemu_pids_for

DATA = Path(__file__).resolve().parents[1] / "data"
USER = DATA / "user_scenarios.py"


def test_run_a_scenario_from_a_user_file(tmp_path):
    proc = ktstr(
        "run", f"{USER}::two_spinners", "--topology", "1n1l2c1t", "--json", str(tmp_path / "r.json")
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "scenario two_spinners on 1n1l2c1t: PASS" in proc.stdout
    assert (tmp_path / "r.json").exists()


def test_shell_exec_prints_the_commands_output():
    proc = ktstr(
        "shell", "--exec", "cat /proc/cpuinfo | grep -c processor", "--topology", "1n2l2c1t"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "4\n"


def test_include_files_are_in_the_guest_and_the_exit_code_is_the_commands(tmp_path):
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "deep.txt").write_text("deep\n")
    command = (
        "cat /include-files/user_include.txt /include-files/tree/sub/deep.txt; "
        "echo to-stderr >&2; exit 5"
    )
    proc = ktstr(
        "shell", "--test", f"{USER}::with_files", "--include", str(tree),
        "--topology", "1n1l1c1t", "--exec", command,
    )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert proc.stdout == "hello from the host\ndeep\n"
    assert "to-stderr" in proc.stderr


def test_exec_timeout_kills_the_vm_in_one_sentence():
    env_runs = os.environ["KTSTR_RUNS_DIR"]
    proc = ktstr(
        "shell",
        "--exec",
        "echo started; sleep 600",
        "--exec-timeout",
        "2",
        "--topology",
        "1n1l1c1t",
    )
    assert proc.returncode == 2
    assert proc.stdout == "started\n"
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ktstr: error")]
    assert len(lines) == 1 and "still running after 2 s (--exec-timeout)" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not qemu_pids_for(env_runs)


def test_dmesg_copies_kernel_messages_to_stderr():
    quiet = ktstr("shell", "--exec", "true", "--topology", "1n1l1c1t")
    loud = ktstr("shell", "--exec", "true", "--dmesg", "--topology", "1n1l1c1t")
    assert quiet.returncode == loud.returncode == 0, quiet.stderr + loud.stderr
    assert "Linux version" not in quiet.stderr
    assert "Linux version" in loud.stderr  # KERN_NOTICE: shown at loglevel 7, not 5


def test_a_declared_scheduler_with_flags_runs_under_the_shell():
    command = "cat /sys/kernel/sched_ext/state /sys/kernel/sched_ext/root/ops; ps -o args"
    proc = ktstr(
        "shell", "--scheduler", f"{USER}::SIMPLE", "--flags", "fifo",
        "--topology", "1n1l2c1t", "--exec", command,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("enabled\nsimple\n")
    assert "/ktstr/sched/bin/scx_simple -f" in proc.stdout  # the declared flag's argument


def test_gauntlet_runs_a_scenario_from_a_user_file():
    ref = f"{USER}::with_files"
    proc = ktstr("gauntlet", ref, "--presets", "tiny-1llc")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{ref}[tiny-1llc]: PASS" in proc.stdout
