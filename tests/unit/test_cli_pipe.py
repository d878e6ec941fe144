"""Output piped into a reader that stops early (``| head``) ends quietly."""

import os
import sys

from ktstr import cli


def test_a_closed_pipe_is_not_an_error(monkeypatch, capsys):
    read, write = os.pipe()
    os.close(read)  # the reader is gone, as head is after its lines
    out = open(write, "w", buffering=1)  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", out)
    try:
        assert cli.main(["scenarios"]) == 0
    finally:
        monkeypatch.undo()
        try:
            out.close()
        except BrokenPipeError:
            pass
    assert "Traceback" not in capsys.readouterr().err
