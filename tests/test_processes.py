"""lcnn_gluon.processes: a function mapped over a list by forked workers, in order, stoppable."""
import os

import pytest

from lcnn_gluon import processes


def _children() -> set:
    """Pids of this process's children, exited but not reaped ones included."""
    pids = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            pids.update(f.read().split())
    return pids


def _square_with_pid(x: int):
    return x * x, os.getpid()


def _dies_at_seven(x: int) -> int:
    if x == 7:
        os._exit(3)  # as the kernel's OOM killer would end it: no exception, no message
    return x


def test_results_come_in_list_order_from_several_processes():
    items = list(range(5 * processes.CHUNK_ITEMS + 3))  # a short last chunk
    out = list(processes.ordered_map(_square_with_pid, items, 3))
    assert [value for value, _ in out] == [x * x for x in items]
    pids = {pid for _, pid in out}
    assert os.getpid() not in pids and len(pids) == 3


def test_a_worker_that_dies_is_an_error_and_no_worker_is_left():
    before = _children()
    with pytest.raises(processes.WorkerDied):
        list(processes.ordered_map(_dies_at_seven, list(range(100)), 2))
    assert _children() == before  # every worker killed and reaped


def test_closing_the_generator_early_stops_the_workers():
    before = _children()
    results = processes.ordered_map(_square_with_pid, list(range(1000)), 2)
    assert next(results)[0] == 0
    assert len(_children() - before) == 2
    results.close()
    assert _children() == before
