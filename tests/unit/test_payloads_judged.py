"""Payload evidence from guest messages, the payloads check, and their metrics in compare."""

import pytest

from ktstr import wire
from ktstr.checks.judge import judge
from ktstr.checks.payloads import payloads as check
from ktstr.payloads.catalog import HACKBENCH
from ktstr.record.payloads import MAX_STREAM_CHARS, payload_records
from ktstr.results.compare import compare, render


def _plan(parser=None):
    return {
        "payloads": [
            {
                "id": 0,
                "name": "hackbench",
                "cgroup": "hb",
                "payload": "hackbench",
                "program": "hackbench",
                "args": [],
                "parser": parser or HACKBENCH.parser_wire(),
            }
        ]
    }


def _out(data, stream="stdout"):
    return {"kind": wire.PAYLOAD_OUTPUT, "id": 0, "stream": stream, "data": data}


def _end(**kw):
    return {"kind": wire.PAYLOAD_END, "id": 0, "at_s": 2.0, "elapsed_s": 2.0, **kw}


def test_output_is_kept_per_payload_and_parsed_on_the_host(tmp_path):
    msgs = [_out("Running...\nTi"), _out("me: 0.5\n"), _out("oops\n", "stderr"), _end(code=0)]
    (rec,) = payload_records(_plan(), msgs, tmp_path)
    assert rec["metrics"] == {"time": {"value": 0.5, "unit": "s", "higher_is_better": False}}
    assert (tmp_path / rec["stdout_file"]).read_text() == "Running...\nTime: 0.5\n"
    assert (tmp_path / rec["stderr_file"]).read_text() == "oops\n"
    assert rec["code"] == 0 and rec["ended"] and "parse_problem" not in rec
    assert check({"payloads": [rec]}, {})[0].status == "pass"


def test_a_flood_is_bounded_on_the_host(tmp_path):
    msgs = [_out("x" * (1 << 19)) for _ in range(5)] + [_end(code=0)]
    (rec,) = payload_records(_plan(), msgs, tmp_path)
    assert len((tmp_path / rec["stdout_file"]).read_text()) == MAX_STREAM_CHARS


def test_unreadable_output_is_inconclusive_with_its_first_lines(tmp_path):
    msgs = [_out("".join(f"line {i}\n" for i in range(40))), _end(code=0)]
    (rec,) = payload_records(_plan(), msgs, tmp_path)
    assert rec["head"][0] == "line 0" and len(rec["head"]) == 20
    (finding,) = check({"payloads": [rec]}, {})
    assert finding.status == "inconclusive" and "cannot read" in finding.message


@pytest.mark.parametrize(
    ("end", "status", "needle"),
    [
        ({"code": 1}, "fail", "exited 1, expected exit 0"),
        ({"signal": 9}, "fail", "killed by signal 9"),
        ({"code": 0, "stopped_by": "end"}, "inconclusive", "stopped (end) before it printed"),
        (None, "inconclusive", "never reported its end"),
    ],
)
def test_how_a_payload_ended_is_judged(tmp_path, end, status, needle):
    msgs = [_end(**end)] if end is not None else []
    (rec,) = payload_records(_plan(), msgs, tmp_path)
    (finding,) = check({"payloads": [rec]}, {})
    assert finding.status == status and needle in finding.message, finding.message


def test_metric_bounds_fail_with_value_and_limit(tmp_path):
    parser = HACKBENCH.parser_wire()
    parser["metrics"][0]["max"] = 0.1
    (rec,) = payload_records(_plan(parser), [_out("Time: 0.5\n"), _end(code=0)], tmp_path)
    (finding,) = check({"payloads": [rec]}, {})
    assert finding.status == "fail" and finding.value == 0.5 and finding.limit == 0.1
    assert "above the maximum" in finding.message


def test_payload_checks_join_the_verdict(tmp_path):
    (rec,) = payload_records(_plan(), [_end(code=3)], tmp_path)
    verdict = judge({"payloads": [rec], "workers": [], "workload_skipped": None})
    assert verdict.status == "fail"
    assert any(f.check == "payloads" for f in verdict.findings)


def _record(sched, seconds):
    return {
        "scenario": "s",
        "topology": "1n1l2c1t",
        "scheduler": {"name": sched},
        "payloads": [
            {
                "name": "hackbench",
                "cgroup": "hb",
                "payload": "hackbench",
                "metrics": {"time": {"value": seconds, "unit": "s", "higher_is_better": False}},
            }
        ],
    }


def test_compare_shows_payload_metrics_with_their_polarity():
    rows = compare([_record("eevdf", 1.0)] * 3, [_record("scx_simple", 2.0)] * 3)
    (row,) = [r for r in rows if r.metric == "hb/hackbench.time"]
    assert row.unit == "s" and row.higher_is_better is False and row.delta == 1.0
    table = render(rows, "eevdf", "scx_simple", color=False)
    assert "hb/hackbench.time [s]" in table and "lower" in table


def test_the_run_summary_lists_each_payload_metric_with_its_polarity(tmp_path):
    from ktstr.results.terminal import payload_table

    (rec,) = payload_records(_plan(), [_out("Time: 0.5\n"), _end(code=0)], tmp_path)
    lines = payload_table({"payloads": [rec]}).splitlines()
    assert lines[0].split() == ["payload", "cgroup", "end", "metric", "value", "better"]
    assert lines[2].split() == ["hackbench", "hb", "exit", "0", "time", "0.5", "s", "lower"]
    assert payload_table({}) == ""


def test_a_policy_may_set_thresholds_of_payload_metrics(tmp_path):
    from ktstr.results.compare import load_policy

    policy = tmp_path / "p.json"
    policy.write_text('{"hb/hackbench.time": {"abs": 5, "rel": 0.5}}')
    rows = compare(
        [_record("eevdf", 1.0)] * 3, [_record("scx_simple", 2.0)] * 3, load_policy(str(policy))
    )
    (row,) = [r for r in rows if r.metric == "hb/hackbench.time"]
    assert row.verdict == "ok"  # a 1 s change is under the 5 s threshold
