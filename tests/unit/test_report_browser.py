"""A report opens in headless Chromium and its plots are drawn (marked browser).

No VM: Chromium is one of the runtime packages ``make setup`` installs.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import HANG_GUARD_S
from tests.unit.test_results import _reportable

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1800",
]


@pytest.mark.browser
def test_report_renders_plots_in_chromium(tmp_path):
    import matplotlib.image

    from ktstr.results import report

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (make setup installs it)"
    page = tmp_path / "report.html"
    page.write_text(report.html_report([_reportable()], "browser test"))
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                page.as_uri(),
            ],
            capture_output=True,
            timeout=HANG_GUARD_S,  # a hang guard only: a screenshot has no time limit
            check=True,
        )
    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    # The heatmap's colormap and the bar colors: a rendered page has many distinct colors,
    # an empty or broken one a handful.
    colors = {
        tuple(round(float(c), 2) for c in px[:3])
        for px in pixels[::7, ::7].reshape(-1, pixels.shape[2])
    }
    assert len(colors) > 60, len(colors)
    assert Path(shot).stat().st_size > 20000
