"""Two real sets of runs compared end to end: a scheduler against EEVDF."""

import json

from tests.helpers import ktstr


def test_scheduler_against_eevdf_prints_deltas_and_significance():
    proc = ktstr(
        "compare",
        "--scheduler",
        "scx_simple",
        "--against",
        "eevdf",
        "steady",
        "--runs",
        "2",
        "--duration",
        "4",
    )
    # Two runs a side cannot reach p < 0.05 (the exact test's floor is 0.33): no regression.
    assert proc.returncode == 0, proc.stdout + proc.stderr
    header = proc.stdout.splitlines()[0]
    assert "A: eevdf" in header and "B: scx_simple" in header and "p" in header.split()
    assert "steady/1n2l2c1t" in proc.stdout and "work_rate" in proc.stdout
    listing = json.loads(
        ktstr("results", "list", "--json", "--filter", "scheduler=scx_simple").stdout
    )
    assert len(listing) >= 2 and all(r["verdict"] == "pass" for r in listing)
    again = ktstr(
        "compare",
        "scheduler=eevdf,scenario=steady",
        "scheduler=scx_simple,scenario=steady",
        "--json",
    )
    assert again.returncode == 0, again.stderr
    rows = json.loads(again.stdout)
    assert {"metric", "a_mean", "b_mean", "delta", "p", "verdict"} <= set(rows[0])


def test_report_of_real_runs(tmp_path):
    ktstr("run", "steady", "--duration", "4")
    run = json.loads(ktstr("results", "list", "--json", "--filter", "scenario=steady").stdout)
    assert run, "no steady run recorded"
    html_out = tmp_path / "r.html"
    proc = ktstr("report", run[-1]["run"], "-o", str(html_out))
    assert proc.returncode == 0, proc.stderr
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") >= 2 and "steady on 1n2l2c1t" in page
    md = tmp_path / "r.md"
    assert ktstr("report", "scenario=steady", "--format", "md", "-o", str(md)).returncode == 0
    assert "## steady on 1n2l2c1t" in md.read_text()
