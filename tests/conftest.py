import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _runs_in_tmp(tmp_path_factory):
    """Keep the suite's run directories out of the working tree."""
    if "KTSTR_RUNS_DIR" not in os.environ:
        os.environ["KTSTR_RUNS_DIR"] = str(tmp_path_factory.mktemp("runs"))
    yield
