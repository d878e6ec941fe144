"""``ktstr shell --exec``: run one command in the guest and stream its output to the host.

The command runs under busybox ``sh -c`` in a session of its own, so a
timeout kills it with everything it started.  Its stdout and stderr go to
the host as they come (chunks of at most ``CHUNK`` bytes, UTF-8 with bad
bytes replaced); its exit status, or that it ran out of time, ends the
stream.  A scheduler in the spec is started before and stopped after it.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import time

from ktstr import wire
from ktstr.guest.channel import Channel
from ktstr.guest.sched import SchedulerProcess

CHUNK = 4096
POLL_S = 0.1
# After the command exits, how long its pipes may stay open (a child it left in the
# background holds them): past that the stream ends without the rest.
DRAIN_AFTER_EXIT_S = 1.0
ENV = {"PATH": "/bin:/sbin:/usr/bin:/usr/sbin", "HOME": "/root", "TERM": "dumb"}


def child_session(out_w: int, err_w: int, cwd: str) -> None:
    """In a forked child: a session of its own (so a kill reaches all it starts), stdin
    from /dev/null, stdout and stderr into the pipes, ``cwd`` as working directory."""
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.chdir(cwd)


def _spawn(command: str) -> tuple[int, dict[int, str]]:
    """Fork ``sh -c command`` with stdin from /dev/null; its pid and {read fd: stream}."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            child_session(out_w, err_w, "/")
            env = dict(os.environ, **ENV)
            os.execve("/bin/sh", ["sh", "-c", command], env)
        finally:
            os._exit(127)
    os.close(out_w)
    os.close(err_w)
    return pid, {out_r: "stdout", err_r: "stderr"}


def run(channel: Channel, spec: dict, sched: SchedulerProcess | None = None) -> None:
    """Run ``spec["command"]``, bounded by ``spec["timeout_s"]`` (None: no bound)."""
    timeout = spec.get("timeout_s")
    started = time.monotonic()
    pid, streams = _spawn(str(spec["command"]))
    decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in streams}
    status = None
    exited_at = None
    timed_out = False
    while streams:
        now = time.monotonic()
        if status is None and timeout is not None and now - started > timeout:
            timed_out = True
            os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        if exited_at is not None and now - exited_at > DRAIN_AFTER_EXIT_S:
            break
        ready, _, _ = select.select(list(streams), [], [], POLL_S)
        for fd in ready:
            data = os.read(fd, CHUNK)
            text = decoders[fd].decode(data, final=not data)
            if text:
                channel.send(wire.EXEC_OUTPUT, stream=streams[fd], data=text)
            if not data:
                os.close(fd)
                del streams[fd]
        if status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                status, exited_at = wait_status, time.monotonic()
        if sched is not None:
            sched.poll()
    for fd in streams:
        os.close(fd)
    if status is None:
        _, status = os.waitpid(pid, 0)
    elapsed = round(time.monotonic() - started, 3)
    if timed_out:
        channel.send(wire.EXEC_END, timed_out=True, elapsed_s=elapsed)
    elif os.WIFSIGNALED(status):
        channel.send(wire.EXEC_END, timed_out=False, elapsed_s=elapsed, signal=os.WTERMSIG(status))
    else:
        code = os.WEXITSTATUS(status)
        channel.send(wire.EXEC_END, timed_out=False, elapsed_s=elapsed, code=code)


def interactive_shell(sched: SchedulerProcess | None = None) -> None:
    """A shell on the console with job control, for ``ktstr shell``."""
    print("ktstr-agent: interactive shell; exit it to power the VM off", flush=True)
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/busybox", ["setsid", "cttyhack", "/bin/sh", "-l"])
    if sched is None:
        os.waitpid(pid, 0)
        return
    while not os.waitpid(pid, os.WNOHANG)[0]:  # keep draining the scheduler's output
        sched.poll()
        time.sleep(POLL_S)


def session(channel: Channel, spec: dict) -> None:
    """``shell`` or ``exec`` mode, under the spec's scheduler when it has one."""
    sched = None
    if spec.get("scheduler"):
        sched = SchedulerProcess(channel, spec["scheduler"])
        if not sched.start(time.monotonic()):
            why = "the scheduler did not attach"
            print(f"ktstr-agent: {why}", flush=True)
            if spec.get("mode") == "exec":
                channel.send(wire.EXEC_END, timed_out=False, elapsed_s=0.0, skipped=why)
            sched.stop()
            return
    try:
        if spec.get("mode") == "exec":
            run(channel, spec, sched)
        else:
            interactive_shell(sched)
    finally:
        if sched is not None:
            sched.stop()
