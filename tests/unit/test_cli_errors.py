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
