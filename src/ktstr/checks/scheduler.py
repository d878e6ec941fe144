"""Scheduler health: how the scheduler under test failed, if it did, with its evidence.

Reads: ``scheduler`` (events, output, kmsg), ``console`` (a panic), ``workload_skipped``.

Never judged from the scheduler's exit status alone (the kernel's example
schedulers exit 0 after the kernel ejected them): the sched_ext state
changes, the kernel's ``sched_ext:`` messages and the scheduler's own
``EXIT:`` line decide.
"""

from __future__ import annotations

import re
import signal

from ktstr.checks.model import FAIL, PASS, Finding

_DISABLED = re.compile(r'sched_ext: BPF scheduler "([^"]+)" disabled \((.+)\)')
_STALL = re.compile(r"(\S+)\[(\d+)\] failed to run for ([\d.]+)s")
_VERIFIER = re.compile(r"BEGIN PROG LOAD LOG|BPF program load failed|processed \d+ insns")
_EXIT_KIND = re.compile(r"exit kind (\d+)(?: on CPU (\d+))?")
_WATCHDOG = re.compile(r"watchdog failed to check in for ([\d.]+)s")
CLEAN_REASON = "unregistered from user space"
# Kernel threads by the names the kernel gives them: a stall of one is the kernel's
# own work starving (RCU, workqueues, softirqs), which a user task stall is not.
_KTHREAD = re.compile(
    r"^(kworker/|ksoftirqd/|rcu_|rcuog/|rcuop/|migration/|cpuhp/|idle_inject/|irq/|jbd2/|"
    r"kthreadd$|kswapd|kcompactd|khugepaged|ksmd|kblockd|kauditd|khungtaskd|kdevtmpfs|"
    r"oom_reaper|writeback|watchdog|ext4-|scsi_|pool_workqueue|kdamond|kthrotld|kintegrityd|"
    r"khugepaged|psimon|hwrng|edac-|devfreq_wq|ipv6_addrconf|netns|kstrp|zswap|blkcg_|"
    r"ata_sff|md$|tpm_dev_wq|acpi_|card\d|nvme-|xfs|btrfs-|virtio|kvm|kmpath|kaluad)"
)
_FRAME = re.compile(r"^\S+\+0x[0-9a-f]+/0x[0-9a-f]+")  # "__schedule+0x9ac/0x1070"
_TRIGGER = re.compile(r"^(\S+)\[(\d+)\] triggered exit kind")

# enum scx_exit_kind (kernel/sched/ext_internal.h)
EXIT_KINDS = {
    0: "none",
    1: "done",
    64: "unreg",
    65: "unreg_bpf",
    66: "unreg_kern",
    67: "sysrq",
    1024: "error",
    1025: "error_bpf",
    1026: "error_stall",
}


def _verifier_summary(lines: list[str]) -> str:
    """The first verifier error line, with the instruction before it and the count."""
    first_error = next(
        (
            i
            for i, ln in enumerate(lines)
            if re.search(r"invalid|R\d+ |unknown func|not allowed|!read_ok", ln)
            and not ln.startswith("libbpf: ")
        ),
        None,
    )
    insns = next(
        (m.group(0) for ln in lines for m in [re.search(r"processed \d+ insns", ln)] if m), ""
    )
    if first_error is None:
        failed = next((ln for ln in lines if "load failed" in ln or "failed to load" in ln), "")
        return (failed or (lines[-1] if lines else "no output")).strip()
    context = lines[first_error - 1].strip() if first_error else ""
    text = lines[first_error].strip()
    return f"{text}" + (f" (after: {context})" if context else "") + (f"; {insns}" if insns else "")


def _trigger(output: list[str]) -> tuple[str | None, list[str]]:
    """Who triggered the exit in the scheduler's debug dump, and the dump's backtrace."""
    who, trace = None, []
    for i, line in enumerate(output):
        match = _TRIGGER.match(line.strip())
        if match and who is None:
            who = match.group(1)
        if line.strip() == "Backtrace:" and not trace:
            trace = [ln.strip() for ln in output[i + 1 : i + 40] if ln.strip()]
            trace = trace[: next((j for j, ln in enumerate(trace) if not _FRAME.match(ln)), 40)]
    return who, trace


def _stuck_in_scheduler(output: list[str]) -> bool:
    """The exit fired on an idle CPU caught inside ``__schedule``: it kept looking for work
    to dispatch and never ran anything, which an endless dispatch loop does."""
    who, trace = _trigger(output)
    return bool(who and who.startswith("swapper/") and any("__schedule" in t for t in trace))


def _kthreads(kmsg: list[dict]) -> dict[str, bool]:
    """pid -> whether the guest found it a kernel thread (PF_KTHREAD) when the kernel
    named it in a stall line."""
    out = {}
    for entry in kmsg:
        match = _STALL.search(entry.get("text", ""))
        if match and isinstance(entry.get("task_kthread"), bool):
            out[match.group(2)] = entry["task_kthread"]
    return out


def _stall(
    stall: re.Match | None,
    stuck: re.Match | None,
    output: list[str],
    cpu: int | None,
    kthreads: dict[str, bool],
) -> tuple[str, str, float | None]:
    """The kind of a stall ejection and what to say of it: which task did not run, or
    whether the watchdog's own worker starved or a CPU sat inside the scheduler.  A task
    is a kernel thread if the guest says so (PF_KTHREAD), else if its name says so."""
    on_cpu = f" (on cpu {cpu})" if cpu is not None else ""
    if stall:
        task, seconds = f"{stall.group(1)}[{stall.group(2)}]", stall.group(3)
        kthread = kthreads.get(stall.group(2))
        if kthread is None:
            kthread = bool(_KTHREAD.match(stall.group(1)))
        kind, what = (
            ("kthread_stall", f"a stall of kernel threads: the kernel thread {task}")
            if kthread
            else ("stall", f"a runnable task stall: {task}")
        )
        return kind, f"was ejected for {what} did not run for {seconds} s{on_cpu}", float(seconds)
    if stuck and _stuck_in_scheduler(output):
        seconds = stuck.group(1)
        return (
            "dispatch_loop",
            f"was ejected: cpu {cpu if cpu is not None else '?'} stopped scheduling (the "
            f"sched_ext watchdog could not check in for {seconds} s and the CPU was caught "
            "inside the scheduler), as an endless dispatch loop does",
            float(seconds),
        )
    if stuck:
        seconds = stuck.group(1)
        return (
            "kthread_stall",
            "was ejected for a stall of kernel threads: the sched_ext watchdog's own kernel "
            f"worker could not run for {seconds} s{on_cpu}",
            float(seconds),
        )
    return "stall", "was ejected for a runnable task stall", None


def scheduler_health(record: dict, th: dict) -> list[Finding]:
    sched = record.get("scheduler")
    if not isinstance(sched, dict) or not sched.get("binary"):
        return []
    name = sched["name"]
    panic = next((ln.strip() for ln in record.get("console", []) if "Kernel panic" in ln), None)
    if panic:  # the kernel died under the scheduler: nothing after this can be trusted
        return [
            Finding(
                "scheduler",
                FAIL,
                "kernel_panic",
                f"the kernel panicked while {name} was loaded: {panic}",
            )
        ]
    events = sched.get("events", [])
    output = [o["line"] for o in sched.get("output", [])]
    kmsg = [k["text"] for k in sched.get("kmsg", [])]
    kinds = [e["event"] for e in events]
    stop_began = next((e["at_s"] for e in events if e["event"] == "stopping"), None)
    exit_ev = next((e for e in events if e["event"] == "exited"), None)

    def finding(kind: str, message: str, **kw) -> Finding:
        return Finding("scheduler", FAIL, kind, message, **kw)

    if "attached" not in kinds:
        if any(_VERIFIER.search(ln) for ln in output):
            return [
                finding(
                    "load_failed",
                    f"{name} failed to load: the verifier rejected it: {_verifier_summary(output)}",
                )
            ]
        code = (
            ""
            if not exit_ev
            else (
                f" (exit {exit_ev['code']})"
                if "code" in exit_ev
                else f" (signal {exit_ev.get('signal')})"
            )
        )
        tail = " | ".join(ln.strip() for ln in output[-3:] if ln.strip()) or "no output"
        return [finding("detached", f"{name} did not attach{code}: {tail}")]

    out: list[Finding] = []
    disabled = None
    for i, line in enumerate(kmsg):
        match = _DISABLED.search(line)
        if match and match.group(2) != CLEAN_REASON:
            disabled = (i, match.group(2))
            break
    if disabled:
        i, reason = disabled
        detail_line = next((ln for ln in kmsg[i + 1 : i + 4] if ln.startswith("sched_ext: ")), "")
        detail = detail_line.split(": ", 2)[-1] if detail_line else ""
        quote = f'; kernel: "{kmsg[i].strip()}"' + (
            f' "{detail_line.strip()}"' if detail_line else ""
        )
        if reason == "scx_bpf_error":
            where = re.match(r"(\S+\.c:\d+): (.*)", detail)
            out.append(
                finding("error_exit", f"{name} called scx_bpf_error(): {detail or reason}{quote}")
                if not where
                else finding(
                    "error_exit",
                    f"{name} called scx_bpf_error() at {where.group(1)}: {where.group(2)}{quote}",
                )
            )
        elif "stall" in reason:
            exit_kind = next((m for ln in output for m in [_EXIT_KIND.search(ln)] if m), None)
            cpu = int(exit_kind.group(2)) if exit_kind and exit_kind.group(2) else None
            stall = next((m for ln in kmsg[i:] + output for m in [_STALL.search(ln)] if m), None)
            stuck = next((m for ln in kmsg[i:] + output for m in [_WATCHDOG.search(ln)] if m), None)
            kind, text, seconds = _stall(
                stall, stuck, output, cpu, _kthreads(sched.get("kmsg", []))
            )
            out.append(finding(kind, f"{name} {text}{quote}", cpu=cpu, value=seconds))
        else:
            kind_no = next(
                (int(m.group(1)) for ln in output for m in [_EXIT_KIND.search(ln)] if m), None
            )
            label = EXIT_KINDS.get(kind_no, reason) if kind_no is not None else reason
            kind = "dispatch_loop" if "dispatch" in (reason + detail).lower() else "exit"
            out.append(
                finding(
                    kind,
                    f"{name} was ejected: {reason}"
                    + (f" (exit kind {kind_no}: {label})" if kind_no else "")
                    + (f": {detail}" if detail else "")
                    + quote,
                )
            )
    elif exit_ev and (stop_began is None or exit_ev["at_s"] < stop_began):
        if "signal" in exit_ev:
            sig = exit_ev["signal"]
            try:
                signame = signal.Signals(sig).name
            except ValueError:
                signame = str(sig)
            core = " (core dumped)" if exit_ev.get("core") else ""
            out.append(
                finding(
                    "crashed", f"{name} was killed by {signame}{core} at +{exit_ev['at_s']:.1f} s"
                )
            )
        else:
            out.append(
                finding(
                    "detached",
                    f"{name} exited with status {exit_ev.get('code')} at "
                    f"+{exit_ev['at_s']:.1f} s without a sched_ext error",
                )
            )
    if not out:
        attached_at = next(e["at_s"] for e in events if e["event"] == "attached")
        end = stop_began if stop_began is not None else float("inf")
        left = any(
            e["state"] != "enabled"
            for e in events
            if e["event"] == "state" and attached_at < e["at_s"] < end
        )
        if left:
            out.append(
                finding("detached", f"{name} stopped being the active scheduler without an error")
            )
    if not out:
        clean = any(_DISABLED.search(k) and CLEAN_REASON in k for k in kmsg)
        out.append(
            Finding(
                "scheduler",
                PASS,
                "ok",
                f"{name} ran the whole scenario" + (" and unregistered cleanly" if clean else ""),
            )
        )
    return out


def scheduler(record: dict, th: dict) -> list[Finding]:
    """Scheduler health, and a workload the guest never ran because the scheduler left."""
    out = scheduler_health(record, th)
    skipped = record.get("workload_skipped")
    if skipped and not any(f.status == FAIL for f in out):
        out.append(Finding("scheduler", FAIL, "detached", skipped))
    return out
