"""Payload programs in the scenario's cgroups: start, stream their output, reap, stop.

Each payload runs in a session of its own (so stopping it stops what it
started), in its cgroup, with stdin from /dev/null.  Its stdout and stderr
go to the host in chunks as they come, at most ``MAX_STREAM`` bytes per
stream (the rest is counted, not sent, and the pipe keeps draining so the
program never blocks on it); its end says how it ended and who stopped it.
"""

from __future__ import annotations

import codecs
import os
import select
import signal
import time

from ktstr import wire
from ktstr.guest import cgroups
from ktstr.guest.execmode import child_session

CHUNK = 4096
MAX_STREAM = 256 * 1024  # bytes sent per stream and payload
ENV = {
    "PATH": "/ktstr/payload/bin:/bin:/sbin:/usr/bin:/usr/sbin",
    "HOME": "/root",
    "TMPDIR": "/tmp",
}


class _Running:
    def __init__(self, op: dict, pid: int, fds: dict[int, str], started: float) -> None:
        self.op, self.pid, self.fds, self.started = op, pid, fds, started
        self.decoders = {fd: codecs.getincrementaldecoder("utf-8")("replace") for fd in fds}
        self.sent = {"stdout": 0, "stderr": 0}
        self.dropped = {"stdout": 0, "stderr": 0}
        self.stopped_by: str | None = None  # "kill_payload" or "end" when ktstr stopped it
        self.status: int | None = None


def _exec(op: dict, lib_path: str, out_w: int, err_w: int) -> None:
    """In the child: a session of its own, the pipes, the cgroup, then the program."""
    child_session(out_w, err_w, "/tmp")
    cgroups.enter(op["path"], 0)
    env = dict(os.environ, **ENV)
    if lib_path:
        env["LD_LIBRARY_PATH"] = f"{lib_path}:{env.get('LD_LIBRARY_PATH', '')}"
    os.execve(op["argv"][0], op["argv"], env)


class Payloads:
    """The payloads of one run, by id."""

    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.running: dict[int, _Running] = {}
        self.t0 = 0.0
        self.lib_path = ""  # the payload programs' library directories in the guest

    def start(self, op: dict) -> int:
        """Fork the payload into its cgroup; its pid."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(out_r)
                os.close(err_r)
                _exec(op, self.lib_path, out_w, err_w)
            except BaseException as err:  # never return into the agent
                os.write(2, f"ktstr: cannot start {op['argv'][0]}: {err}\n".encode())
            finally:
                os._exit(127)
        os.close(out_w)
        os.close(err_w)
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
        self.running[op["id"]] = _Running(
            op, pid, {out_r: "stdout", err_r: "stderr"}, time.monotonic()
        )
        return pid

    def fds(self) -> list[int]:
        return [fd for p in self.running.values() for fd in p.fds]

    def is_running(self, ids: list[int]) -> bool:
        return any(i in self.running for i in ids)

    def in_cgroup(self, path: str) -> list[int]:
        """Payloads in the cgroup at ``path`` or below it."""
        return [
            i
            for i, p in self.running.items()
            if p.op["path"] == path or p.op["path"].startswith(path + "/")
        ]

    def _read(self, pid_id: int, proc: _Running, fd: int) -> bool:
        """Read what one pipe holds; False at its end."""
        stream = proc.fds[fd]
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        room = MAX_STREAM - proc.sent[stream]
        kept, proc.dropped[stream] = data[:room], proc.dropped[stream] + max(0, len(data) - room)
        text = proc.decoders[fd].decode(kept, final=not data)
        if text:
            proc.sent[stream] += len(kept)
            self.channel.send(wire.PAYLOAD_OUTPUT, id=pid_id, stream=stream, data=text)
        return bool(data)

    def drain(self, ready: list[int] | None = None) -> None:
        """Forward what the payloads printed (``ready``: the fds select found readable)."""
        for pid_id, proc in list(self.running.items()):
            for fd in list(proc.fds):
                if ready is not None and fd not in ready:
                    continue
                if not self._read(pid_id, proc, fd):
                    os.close(fd)
                    del proc.fds[fd]

    def exited(self, pid: int, status: int) -> None:
        """A payload's exit status, collected by another reaper (the worker pool's)."""
        for proc in self.running.values():
            if proc.pid == pid:
                proc.status = status

    def reap(self) -> None:
        """Send the end of every payload that exited (after the rest of its output)."""
        for pid_id, proc in list(self.running.items()):
            if proc.status is None:
                try:
                    done, status = os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    continue  # reaped elsewhere: ``exited`` has its status
                if not done:
                    continue
                proc.status = status
            self._finish(pid_id, proc)

    def _finish(self, pid_id: int, proc: _Running) -> None:
        for fd in list(proc.fds):  # what is left in the pipes, without waiting for grandchildren
            for _ in range(MAX_STREAM // CHUNK + 1):
                if not self._read(pid_id, proc, fd) or not select.select([fd], [], [], 0)[0]:
                    break
            os.close(fd)
        proc.fds.clear()
        status, end = proc.status, {}
        if status is not None and os.WIFEXITED(status):
            end["code"] = os.WEXITSTATUS(status)
        elif status is not None and os.WIFSIGNALED(status):
            end["signal"] = os.WTERMSIG(status)
        now = time.monotonic()
        self.channel.send(
            wire.PAYLOAD_END,
            id=pid_id,
            at_s=round(now - self.t0, 6) if self.t0 else 0.0,
            elapsed_s=round(now - proc.started, 6),
            stopped_by=proc.stopped_by,
            dropped=proc.dropped,
            **end,
        )
        del self.running[pid_id]

    def kill(self, ids: list[int], why: str, sig: int = signal.SIGTERM) -> None:
        """Signal the payloads' whole sessions; ``why`` is recorded as who stopped them."""
        for i in ids:
            proc = self.running.get(i)
            if proc is None or proc.status is not None:
                continue
            proc.stopped_by = proc.stopped_by or why
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:  # not yet in a session of its own: just the child
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def stop_all(self, grace_s: float) -> None:
        """At the end: SIGTERM every payload, SIGKILL those left after ``grace_s``."""
        self.kill(list(self.running), "end")
        until = time.monotonic() + grace_s
        while self.running and time.monotonic() < until:
            fds = self.fds()
            ready = select.select(fds, [], [], 0.05)[0] if fds else []
            self.drain(ready)
            self.reap()
        self.kill(list(self.running), "end", signal.SIGKILL)
        for pid_id, proc in list(self.running.items()):
            if proc.status is None:
                try:
                    proc.status = os.waitpid(proc.pid, 0)[1]
                except ChildProcessError:
                    pass  # reaped elsewhere without telling: its end says no code
            self._finish(pid_id, proc)
