"""Preloaded into each worker process of ``--dask local:N``: Ctrl-C is the client's.

A terminal's Ctrl-C reaches every process in its foreground group, and a
local cluster's workers are in the client's.  The client stops them itself
when interrupted (their VMs die with them), so they ignore the signal
rather than each print Dask's traceback over the client's one sentence.
"""

from __future__ import annotations

import signal
import threading


def dask_setup(worker: object) -> None:
    """Dask's preload hook: runs as the worker process starts, restarted ones too."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
