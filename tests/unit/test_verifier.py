"""ktstr verifier without a VM: recorded guest reports, verifier logs, tables and deltas.

tests/data/verifier holds what the guest sent from real runs (scx_simple
loading, scx_qmap built by clang 19 rejected).
"""

import json
from pathlib import Path

import pytest

from ktstr import wire
from ktstr.guest import verifier as guest_verifier
from ktstr.verifier import log as vlog
from ktstr.verifier import report, sweep
from ktstr.vm.guest_messages import validate
from tests.helpers import assert_one_sentence, ktstr

pytest_plugins = ["pytester"]
DATA = Path(__file__).resolve().parents[1] / "data" / "verifier"
SIMPLE_OPS = {
    "simple_select_c",
    "simple_enqueue",
    "simple_dispatch",
    "simple_running",
    "simple_stopping",
    "simple_enable",
    "simple_init",
    "simple_exit",
}


def _message(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _cell(message: dict, attached: bool = True, kernel: str = "7.2") -> dict:
    record = {
        "verifier": message,
        "kernel": {"release": kernel},
        "topology": "1n1l2c1t",
        "verdict": "pass" if attached else "fail",
        "scheduler": {"events": [{"event": "attached"}] if attached else []},
        "workers": [{"ext_at_start": True, "units": 10}],
    }
    return sweep.cell(record, Path("runs/x"), "scx_simple", "/bin/scx_simple")


def test_recorded_reports_pass_the_host_validation():
    for name in ("scx_simple.json", "scx_qmap.json", "scx_qmap-clang19.json"):
        assert validate(_message(name)) is None


def test_a_report_with_a_bad_count_is_refused():
    message = _message("scx_simple.json")
    message["loads"][0]["verified_insns"] = -1
    assert "verified_insns" in validate(message)


def test_programs_are_the_ones_the_attached_scheduler_holds_with_their_figures():
    cell = _cell(_message("scx_simple.json"))
    progs = {p["name"]: p for p in cell["programs"]}
    # libbpf's feature probes were loaded too, and closed: they are not the scheduler's.
    assert set(progs) == SIMPLE_OPS
    enqueue = progs["simple_enqueue"]
    assert enqueue["type"] == "struct_ops"
    assert enqueue["verified_insns"] == 42
    assert (enqueue["states"], enqueue["peak_states"], enqueue["stack_depth"]) == (3, 3, 32)
    assert enqueue["time_us"] == 58922 and enqueue["limit"] == vlog.LIMIT
    assert not enqueue["warning"]
    assert cell["attached"] and cell["dispatched"] and cell["rejection"] is None


def test_stats_take_the_last_figures_of_a_log():
    text = (
        "verification time 12 usec\nstack depth 8+16 max 24\n"
        "processed 812345 insns (limit 1000000) max_states_per_insn 4 total_states 900 "
        "peak_states 300 mark_read 5\n"
    )
    st = vlog.stats(text)
    assert (st.processed, st.total_states, st.peak_states, st.time_us, st.stack_depth) == (
        812345,
        900,
        300,
        12,
        24,
    )
    assert vlog.stats("").processed is None


def test_a_program_near_the_limit_warns():
    message = _message("scx_simple.json")
    load = next(x for x in message["loads"] if x["name"] == "simple_enqueue")
    load["verified_insns"] = 800_000
    cell = _cell(message)
    prog = next(p for p in cell["programs"] if p["name"] == "simple_enqueue")
    assert prog["warning"] and prog["fraction"] == 0.8
    lines = report.sweep_lines([cell])
    assert any(ln.startswith("warning: scx_simple simple_enqueue") for ln in lines)
    assert any("800000 (80.0%)" in ln and ln.rstrip().endswith("!") for ln in lines)


def test_a_rejection_names_the_error_and_the_instruction_before_it():
    cell = _cell(_message("scx_qmap-clang19.json"), attached=False)
    rej = cell["rejection"]
    assert rej["program"] == "qmap_dequeue"
    assert rej["error"] == "R7 invalid mem access 'scalar'"
    assert rej["insn_before"].startswith(tuple("0123456789"))
    assert "r7" in rej["insn_before"]
    assert cell["programs"] == []
    text = "\n".join(report.sweep_lines([cell]))
    assert "REJECTED" in text
    assert "the verifier rejected qmap_dequeue: R7 invalid mem access 'scalar'" in text


def test_a_rejection_without_a_log_names_the_errno():
    rej = vlog.rejection("", 7)
    assert rej.error == "the kernel refused the program: Argument list too long (errno 7)"
    assert rej.insn_before is None


def test_collapse_prints_a_loop_once_with_its_count():
    body = ["10: (07) r1 += 1 ; R1_w={n}", "11: (b5) if r1 <= 0x10 goto pc-2"]
    lines = ["0: (b7) r1 = 0"]
    for n in range(5):
        lines += [body[0].format(n=n), body[1]]
    lines.append("R1 invalid")
    out = vlog.collapse(lines)
    assert out == [
        "0: (b7) r1 = 0",
        "10: (07) r1 += 1 ; R1_w=0",
        "11: (b5) if r1 <= 0x10 goto pc-2",
        "... the 2 lines above repeated 4 more times",
        "R1 invalid",
    ]
    assert vlog.collapse(["a", "a", "a"]) == ["a", "... the line above repeated 2 more times"]
    assert vlog.collapse(["a", "b"]) == ["a", "b"]


def test_compare_gives_per_program_deltas():
    a = _cell(_message("scx_simple.json"))
    message = _message("scx_simple.json")
    next(x for x in message["loads"] if x["name"] == "simple_enqueue")["verified_insns"] = 84
    b = _cell(message, kernel="7.3")
    rows = {r["program"]: r for r in report.compare_rows(a, b)}
    assert rows["simple_enqueue"]["verified_insns"] == {"a": 42, "b": 84, "delta": 42}
    assert rows["simple_exit"]["verified_insns"]["delta"] == 0
    lines = report.compare_lines(a, b, "7.2", "7.3")
    assert any("simple_enqueue" in ln and "+42 (+100.0%)" in ln for ln in lines)


def test_a_table_has_kernels_as_columns():
    cells = [_cell(_message("scx_simple.json")), _cell(_message("scx_simple.json"), kernel="7.3")]
    lines = report.scheduler_table(cells)
    assert lines[0].split()[:4] == ["program", "type", "7.2", "7.3"]
    assert any(ln.startswith("simple_enqueue") and ln.count("42 (0.0%)") == 2 for ln in lines)


def test_the_guest_reads_a_load_file_and_bounds_its_log(tmp_path):
    path = tmp_path / "load-000000"
    log = b"x" * (guest_verifier.LOG_HEAD + guest_verifier.LOG_TAIL + 100)
    path.write_bytes(b"name qmap_dequeue\ntype 27\nfd -1\nerrno 13\nid 0\n\n" + log)
    load = guest_verifier.read_load(str(path))
    assert (load["name"], load["type"], load["fd"], load["errno"]) == ("qmap_dequeue", 27, -1, 13)
    assert load["log_bytes"] == len(log)
    assert "... 100 bytes left out ..." in load["log"]
    assert (
        validate({"v": wire.VERSION, "kind": wire.VERIFIER, "t": 1.0, "loads": [load], "live": []})
        is None
    )


def test_a_scheduler_that_does_not_exist_is_one_sentence():
    assert_one_sentence(
        ktstr("verifier", "--scheduler", "scx_does_not_exist"), "scx_does_not_exist"
    )


PLUGIN_FILE = """
from ktstr import CgroupDef, Scheduler, ktstr_test

SIMPLE = Scheduler("scx_simple", "scx_simple")

@ktstr_test(topology="1n1l2c1t")
def test_eevdf(ctx):
    return ctx.run_defs([CgroupDef("cg")])

@ktstr_test(topology="1n1l2c1t", scheduler=SIMPLE)
def test_one(ctx):
    return ctx.run_defs([CgroupDef("cg")])

@ktstr_test(topology="1n2l2c1t", scheduler=SIMPLE)
def test_two(ctx):
    return ctx.run_defs([CgroupDef("cg")])
"""


def test_pytest_ktstr_verifier_adds_one_item_per_declared_scheduler(pytester):
    pytester.makepyfile(test_v=PLUGIN_FILE)
    args = ("--collect-only", "-q", "-p", "no:cacheprovider")
    plain = pytester.runpytest_subprocess(*args).stdout.str()
    assert "ktstr_verifier" not in plain
    out = pytester.runpytest_subprocess(*args, "--ktstr-verifier").stdout.str()
    items = [ln for ln in out.splitlines() if "::" in ln]
    assert [i for i in items if "ktstr_verifier" in i] == ["test_v.py::ktstr_verifier[scx_simple]"]
    assert len(items) == 4
    only = pytester.runpytest_subprocess(*args, "--ktstr-verifier", "-k", "ktstr_verifier")
    assert [ln for ln in only.stdout.str().splitlines() if "::" in ln] == [
        "test_v.py::ktstr_verifier[scx_simple]"
    ]


def test_the_guest_keeps_a_report_under_its_log_budget(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(guest_verifier, "LOG_BUDGET", 600 * 1024)
    for i in range(4):
        body = b"line\n" * 100_000 + b"R7 invalid mem access 'scalar'\n"
        (tmp_path / f"load-{i:06d}").write_bytes(b"name p\nfd -1\nerrno 13\n\n" + body)

    class Channel:
        def send(self, kind, **fields):
            sent.append(fields)

    guest_verifier.report(Channel(), str(tmp_path), 0)
    logs = [load["log"] for load in sent[0]["loads"]]
    assert len(logs) == 4 and sum(map(len, logs)) < 600 * 1024 + 3 * 4200
    assert all(log.endswith("R7 invalid mem access 'scalar'\n") for log in logs)
    assert len(logs[-1]) < 4200


def test_a_scheduler_that_loaded_but_did_not_attach_points_at_its_run():
    cell = _cell(_message("scx_simple.json"), attached=False)
    assert cell["rejection"] is None
    text = "\n".join(report.sweep_lines([cell]))
    assert "did not attach" in text and "runs/x" in text


def test_the_guest_names_a_btf_type_as_the_host_reader_does():
    from ktstr.monitor.btf import Btf

    vmlinux = Path("/sys/kernel/btf/vmlinux")
    if not vmlinux.is_file():
        pytest.skip("this host's kernel has no BTF")
    blob = vmlinux.read_bytes()
    btf = Btf(blob)
    for type_id in (1, 2, 100, len(btf.types) // 2, len(btf.types) - 1):
        assert guest_verifier.btf_name(blob, type_id) == btf.types[type_id].name
    assert guest_verifier.btf_name(blob, len(btf.types) + 5) is None
    assert guest_verifier.btf_name(b"junk", 1) is None


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (
            ("--compare", "nosuch1", "nosuch2"),
            "names neither two scheduler binaries nor two kernels",
        ),
        (("--scheduler", "eevdf"), "loads no BPF programs"),
        (("--scheduler", "scx_simple", "--topology", "9x"), "'9x' is not of the form"),
    ],
)
def test_bad_input_is_one_sentence(args, needle):
    assert_one_sentence(ktstr("verifier", *args), needle)


def test_programs_are_named_by_their_btf_function():
    cell = _cell(_message("scx_qmap.json"))
    names = [p["name"] for p in cell["programs"]]
    assert len(names) == len(set(names)) == 20
    assert {"qmap_cgroup_set_weight", "qmap_cgroup_set_bandwidth"} <= set(names)
    dispatch = next(p for p in cell["programs"] if p["name"] == "qmap_dispatch")
    assert dispatch["verified_insns"] == 8365 and dispatch["peak_states"] == 753


def test_several_topologies_name_their_columns():
    a, b = _cell(_message("scx_simple.json")), _cell(_message("scx_simple.json"))
    b["topology"] = "2n2l1c1t"
    head = report.scheduler_table([a, b])[0]
    assert "7.2 @ 1n1l2c1t" in head and "7.2 @ 2n2l1c1t" in head
