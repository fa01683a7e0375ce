"""A function mapped over a list by worker processes, results in list order, stoppable at any time.

``ordered_map(fn, items, workers)`` forks ``workers`` processes, each with a pipe of its own that
no other process shares, and hands them chunks of items. Stopping (an interrupt, a failure, the
caller closing the generator) kills them, so no lock can be left held. With multiprocessing's
Pool, whose workers share locked queues, ``terminate()`` twice left the parent waiting forever for
such a lock in CI (SIGTERM while packing: tests/test_im2rec_hostile.py).
"""
from __future__ import annotations

import collections
import contextlib
import multiprocessing
import multiprocessing.connection
import signal
import threading
from typing import Callable, Iterator, List, Optional, Sequence, TypeVar

__all__ = ["ordered_map", "WorkerDied", "stop_signals_deferred"]

T = TypeVar("T")
R = TypeVar("R")

# Items per message to a worker, and messages a worker has in hand at most: enough to keep it busy
# while the parent uses the results, few enough that a stop is quick.
CHUNK_ITEMS = 16
CHUNKS_IN_HAND = 2

# Signals that stop a run. While the parent forks its workers they are held back and raised
# after: one that came during a fork either ran the parent's handler inside Python's after-fork
# hooks, which print the exception and go on (the run was not stopped: 3 of 60 SIGTERMs sent as
# the workers started), or interrupted Process.start() after the fork and before the child's pid
# was kept, and the worker outlived the run, holding its output open. Blocking them with
# pthread_sigmask is not enough: another thread (tqdm's monitor) takes the signal instead.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class WorkerDied(RuntimeError):
    """A worker process ended before it sent back all the results it was given."""


@contextlib.contextmanager
def stop_signals_deferred():
    """Within the block, SIGINT and SIGTERM are noted, not handled; at its end the first one noted
    is raised again, for the handlers of before (in the main thread only, where they run)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signal.raise_signal(caught[0])


def _worker(conn, fn: Callable, init: Optional[Callable[[], None]]) -> None:
    """A worker process: ``fn`` of each item of each chunk it receives, sent back as one list per
    chunk; it ends at ``None``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent cleans up alone
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler would print a traceback here
    if init is not None:
        init()
    while True:
        chunk = conn.recv()
        if chunk is None:
            return
        conn.send([fn(item) for item in chunk])


def ordered_map(fn: Callable[[T], R], items: Sequence[T], workers: int,
                init: Optional[Callable[[], None]] = None) -> Iterator[R]:
    """``fn(item)`` of every item, in list order, computed by ``workers`` forked processes (each
    runs ``init()`` first). Raises :class:`WorkerDied` if one of them dies."""
    ctx = multiprocessing.get_context("fork")
    chunks: List[Sequence[T]] = [items[i:i + CHUNK_ITEMS] for i in range(0, len(items), CHUNK_ITEMS)]
    procs, conns, in_hand = [], [], {}
    sent = written = 0
    done = {}  # chunk number -> its results, until the chunks before it are out

    def send_next(conn) -> None:
        nonlocal sent
        if sent < len(chunks):
            try:
                conn.send(chunks[sent])
            except OSError:  # its end of the pipe closed
                raise WorkerDied() from None
            in_hand[conn].append(sent)
            sent += 1

    try:
        with stop_signals_deferred():
            for _ in range(min(workers, len(chunks))):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_worker, args=(child, fn, init), daemon=True)
                procs.append(proc), conns.append(parent)
                proc.start()
                child.close()
                in_hand[parent] = collections.deque()
        for _ in range(CHUNKS_IN_HAND):
            for conn in conns:
                send_next(conn)
        while written < len(chunks):
            for conn in multiprocessing.connection.wait([c for c in conns if in_hand[c]]):
                try:
                    done[in_hand[conn].popleft()] = conn.recv()
                except (EOFError, OSError):
                    raise WorkerDied() from None
                send_next(conn)
            while written in done:
                yield from done.pop(written)
                written += 1
        for conn in conns:
            conn.send(None)
        for proc in procs:
            proc.join()
        procs = []
    finally:
        procs = [proc for proc in procs if proc.pid is not None]  # (started)
        for proc in procs:  # interrupted or failed
            proc.kill()
        for proc in procs:
            proc.join()
        for conn in conns:
            conn.close()
