"""Measured inference speed: an exported LCNN network (the C++ operator) against the same
network with dense layers, timed in the same process on the same input.

Both networks are hybridized with static memory and timed twice, plainly and after MXNet's
oneDNN graph passes; the faster counts (each network at its best). Times are medians, so a
noisy shared machine moves them less than means, and the four forms are timed in turns
(:func:`in_turns`), so that a slow minute of a shared machine falls on all of them alike.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, Dict, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock

WARMUP_RUNS = 3  # untimed calls first: memory planning and oneDNN primitive creation
# Turns of in_turns: each form's timed calls in this many groups, the forms one after another
# (the speed of the shared machines measured here moved by 20-40% within minutes).
TURNS = 5


def median_ms(fn: Callable[[], None], runs: int, warmup: int = WARMUP_RUNS) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``runs`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def in_turns(networks: Dict[str, Callable[[], HybridBlock]], x: mx.nd.NDArray, runs: int,
             turns: int = TURNS) -> Dict[str, Tuple[float, str]]:
    """``{name: (ms, form)}``: each network (``make()`` gives a fresh copy of it) at its faster
    form, hybridized plainly or optimised by oneDNN's graph passes, on ``x``. Every form's
    median over ``runs`` timed calls, taken in ``turns`` turns: in each turn every form makes one
    untimed call (its caches warm again after the others ran), then its share of the calls."""
    calls = {}
    for name, make in networks.items():
        plain = make()
        plain.hybridize(static_alloc=True, static_shape=True)
        calls[(name, "plain")] = plain
        graph = make()
        try:
            graph.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
            calls[(name, "oneDNN graph")] = graph
        except mx.base.MXNetError:  # a graph the passes cannot take: the plain form stands
            pass
    times = {key: [] for key in calls}
    for key, block in calls.items():
        for _ in range(WARMUP_RUNS):
            block(x).wait_to_read()
    for turn in range(turns):
        for key, block in calls.items():
            block(x).wait_to_read()
            for _ in range(runs * (turn + 1) // turns - runs * turn // turns):
                start = time.perf_counter()
                block(x).wait_to_read()
                times[key].append(time.perf_counter() - start)
    best = {}
    for (name, form), taken in times.items():
        ms = statistics.median(taken) * 1e3
        if name not in best or ms < best[name][0]:
            best[name] = (ms, form)
    return best


def exported_vs_dense(lcnn: HybridBlock, dense: HybridBlock, data_shape: Sequence[int], batch: int = 1,
                      runs: int = 50) -> dict:
    """Export ``lcnn`` with the C++ operator (checked against ``lcnn`` itself) and time it against
    ``dense`` on a random ``(batch, *data_shape)`` input (:func:`in_turns`). Returns ``dense_ms``,
    ``lcnn_ms`` and ``measured_speedup`` (dense / LCNN)."""
    from . import export, ops  # export imports the model code; keep this module light

    ops.load()
    x = mx.nd.random.normal(shape=(batch,) + tuple(data_shape))
    with tempfile.TemporaryDirectory() as folder:
        prefix = os.path.join(folder, "lcnn")
        export.export(export.sparsify(lcnn, tuple(data_shape)), prefix, tuple(data_shape), dict(library=ops.LIBRARY),
                      reference=lcnn)
        timed = in_turns(dict(lcnn=lambda: export.load_exported(prefix), dense=copies(dense, x, folder)), x, runs)
    dense_ms, lcnn_ms = timed["dense"][0], timed["lcnn"][0]
    return dict(dense_ms=dense_ms, lcnn_ms=lcnn_ms, measured_speedup=dense_ms / lcnn_ms)


def copies(net: HybridBlock, x: mx.nd.NDArray, folder: str) -> Callable[[], HybridBlock]:
    """A maker of fresh copies of ``net`` (exported once into ``folder``), for :func:`in_turns`."""
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, "copy")
    net.hybridize()
    net(x).wait_to_read()
    net.export(prefix)
    return lambda: mx.gluon.nn.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
