"""Payload output parsers: real programs' output, and guest garbage that must never raise."""

import json
from pathlib import Path

import pytest

from ktstr.payloads.catalog import PAYLOADS
from ktstr.payloads.model import Metric, Payload
from ktstr.payloads.parse import HEAD_LINES, head, parse, select, stress_ng_document

DATA = Path(__file__).resolve().parents[1] / "data" / "payloads"


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_every_shipped_parser_reads_its_programs_real_output(name):
    payload = PAYLOADS[name]
    values, problem = parse(payload.parser_wire(), (DATA / f"{name}.stdout").read_text(), "")
    assert problem is None
    assert set(values) == {m.name for m in payload.metrics}
    assert all(v >= 0 for v in values.values())


def test_stress_ng_yaml_sums_bogo_ops_over_stressors():
    doc, problem = stress_ng_document((DATA / "stress-ng.stdout").read_text())
    assert problem is None and set(doc["metrics"]) == {"cpu", "fork"}
    cpu, fork = doc["metrics"]["cpu"]["bogo-ops"], doc["metrics"]["fork"]["bogo-ops"]
    values, _ = parse(
        PAYLOADS["stress-ng"].parser_wire(), (DATA / "stress-ng.stdout").read_text(), ""
    )
    assert values["bogo_ops"] == float(cpu) + float(fork)


def test_paths_take_every_item_with_a_star_and_skip_what_is_not_a_number():
    doc = {"jobs": [{"r": {"iops": 2}}, {"r": {"iops": "3.5"}}, {"r": {"iops": "x"}}, 7]}
    assert select(doc, "jobs/*/r/iops") == [2.0, 3.5]
    assert select(doc, "jobs/1/r/iops") == [3.5]
    assert select(doc, "jobs/9/r") == [] and select(doc, "nothing/*/x") == []


GARBAGE = [
    "",
    "\x00\xff" * 1000,
    "[" * 100_000,
    '{"jobs": [' + "[" * 50_000 + "]",
    "{" + '"a":' * 10 + "1e999}",
    "metrics:\n    - stressor\n      bogo-ops: many\n",
    "Time: NaN\nTime: inf\n",
    "x" * (5 << 20),
]


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("text", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_a_problem_never_an_exception(name, text):
    values, problem = parse(PAYLOADS[name].parser_wire(), text, text)
    assert problem and isinstance(problem, str)
    assert all(isinstance(v, float) for v in values.values())


def test_a_missing_metric_is_named_and_found_ones_are_kept():
    payload = Payload(
        "p",
        "true",
        output="regex",
        metrics=(Metric("a", r"a=(\d+)"), Metric("b", r"b=(\d+)", aggregate="max")),
    )
    values, problem = parse(payload.parser_wire(), "a=1\na=2\n", "")
    assert values == {"a": 2.0} and "no value for b" in problem


def test_stderr_and_both_streams():
    metric = Metric("t", r"t=(\d+)")
    on_err = Payload("p", "true", output="regex", stream="stderr", metrics=(metric,))
    assert parse(on_err.parser_wire(), "t=1", "t=2")[0] == {"t": 2.0}
    both = Payload("p", "true", output="regex", stream="both", metrics=(metric,))
    assert parse(both.parser_wire(), "t=1", "")[0] == {"t": 1.0}


def test_json_after_warnings_is_found():
    payload = Payload("p", "fio", output="json", metrics=(Metric("x", "a/b"),))
    text = "fio: warning: something\n" + json.dumps({"a": {"b": 4}}) + "\ntrailing"
    assert parse(payload.parser_wire(), text, "") == ({"x": 4.0}, None)


def test_head_keeps_the_first_twenty_lines_each_bounded():
    lines = head("\n".join("y" * 1000 for _ in range(50)))
    assert len(lines) == HEAD_LINES and all(len(ln) == 500 for ln in lines)
