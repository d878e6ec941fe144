"""User mistakes end in one sentence and exit code 2, never a traceback (no VM needed)."""

from tests.helpers import assert_one_sentence, ktstr


def test_malformed_topology():
    assert_one_sentence(ktstr("vm", "probe", "--topology", "2n3x"), "2n3x", "1n2l4c2t")


def test_uneven_topology():
    assert_one_sentence(ktstr("vm", "probe", "--topology", "2n3l1c1t"), "split evenly")


def test_nonexistent_kernel_path():
    assert_one_sentence(
        ktstr("vm", "probe", "--kernel", "/nonexistent/bzImage"),
        "/nonexistent/bzImage",
        "does not exist",
    )


def test_kernel_info_of_missing_path():
    assert_one_sentence(ktstr("kernel", "info", "./no-such-vmlinux"), "does not exist")


def test_help_explains_commands():
    out = ktstr("--help").stdout
    for word in ("kernel", "vm", "shell", "doctor"):
        assert word in out
    probe_help = ktstr("vm", "probe", "--help").stdout
    assert "KTSTR_KERNEL" in probe_help and "TCG" in probe_help


def test_cli_choices_agree_with_the_modules():
    from ktstr import cli
    from ktstr.kernel import debian
    from ktstr.vm import accel

    assert set(cli.FLAVOURS) == set(debian.FLAVOURS)
    assert cli.ACCEL_CHOICES == accel.CHOICES


def test_scenarios_lists_the_whole_catalog_with_descriptions():
    from ktstr.scenario.catalog import CATALOG

    proc = ktstr("scenarios")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(CATALOG)
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # each has a description


def test_check_exit_codes_follow_the_verdict(tmp_path):
    import json

    from ktstr.record import SCHEMA as RECORD_SCHEMA

    def stored(gap_s: float, units: float) -> str:
        rec = {
            "schema": RECORD_SCHEMA,
            "duration_s": 6.0,
            "observed_topology": {"cpus": 2},
            "events": [{"at_s": 0.0, "op": "spawn", "path": "a", "ids": [0]}],
            "console": [],
            "workers": [
                {
                    "id": 0,
                    "cgroup_path": "a",
                    "work": "spin",
                    "units": units,
                    "start_s": 0.0,
                    "end_s": 6.0,
                    "cpu_time_ns": 5e9,
                    "gaps": [[gap_s, 1.0, 0]],
                    "residency": [[0.0, 0]],
                }
            ],
        }
        run = tmp_path / f"run-{gap_s}-{units}"
        run.mkdir()
        (run / "record.json").write_text(json.dumps(rec))  # NaN is written as the token NaN
        return str(run)

    assert ktstr("check", stored(0.1, 100)).returncode == 0
    assert ktstr("check", stored(2.5, 100)).returncode == 1
    inconclusive = ktstr("check", stored(0.1, float("nan")))
    assert inconclusive.returncode == 2, inconclusive.stdout + inconclusive.stderr
    assert "not a finite number" in inconclusive.stdout
