"""The agent's wait for workers at the end: patient while they are still exiting."""

import os
import time

from ktstr.guest.pool import Pool


def fork_sleepers(delays: list[float]) -> Pool:
    pool = Pool()
    pids = {}
    for wid, delay in enumerate(delays):
        pid = os.fork()
        if pid == 0:  # the worker: sleep, then exit
            time.sleep(delay)
            os._exit(0)
        pids[wid] = pid
    pool.add(pids, "cg")
    return pool


def test_the_wait_goes_on_while_workers_keep_exiting():
    # an exit every 0.5 s: all of them take longer than the 1 s grace, no gap does
    pool = fork_sleepers([0.5, 1.0, 1.5, 2.0, 2.5])
    pool.wait_for(pool.live(), 1.0, while_exiting_s=30.0)
    assert pool.live() == []


def test_without_exits_the_grace_ends_the_wait():
    pool = fork_sleepers([0.1, 600.0])
    pool.wait_for(pool.live(), 0.5, while_exiting_s=30.0)
    # the first exit moved the end half a second on; nothing exited after it
    assert pool.live() == [1]
    os.kill(pool.pids[1], 9)
    pool.wait_for([1], 5.0)
    assert pool.live() == []
