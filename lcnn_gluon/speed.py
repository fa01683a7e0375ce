"""Measured inference speed: an exported LCNN network (the C++ operator) against the same
network with dense layers, timed in the same process on the same input.

Both networks are hybridized with static memory and timed twice, plainly and after MXNet's
oneDNN graph passes; the faster counts (each network at its best). Times are medians, so a
noisy shared machine moves them less than means.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock

WARMUP_RUNS = 3  # untimed calls first: memory planning and oneDNN primitive creation


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


def fastest(block: HybridBlock, x: mx.nd.NDArray, runs: int) -> Tuple[float, str]:
    """(ms, variant) of one forward pass of ``block`` on ``x``: hybridized plainly or optimised by
    oneDNN's graph passes, whichever is faster."""
    def run():
        block(x).wait_to_read()
    block.hybridize(static_alloc=True, static_shape=True)
    plain = median_ms(run, runs)
    try:
        block.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
        fused = median_ms(run, runs)
    except mx.base.MXNetError:  # a graph the passes cannot take: the plain time stands
        fused = float("inf")
    return (fused, "oneDNN graph") if fused < plain else (plain, "plain")


def exported_vs_dense(lcnn: HybridBlock, dense: HybridBlock, data_shape: Sequence[int], batch: int = 1,
                      runs: int = 50) -> dict:
    """Export ``lcnn`` with the C++ operator (checked against ``lcnn`` itself) and time it against
    ``dense`` on a random ``(batch, *data_shape)`` input. Returns ``dense_ms``, ``lcnn_ms`` and
    ``measured_speedup`` (dense / LCNN)."""
    from . import export, ops  # export imports the model code; keep this module light

    ops.load()
    x = mx.nd.random.normal(shape=(batch,) + tuple(data_shape))
    with tempfile.TemporaryDirectory() as folder:
        prefix = os.path.join(folder, "lcnn")
        export.export(export.sparsify(lcnn, tuple(data_shape)), prefix, tuple(data_shape), dict(library=ops.LIBRARY),
                      reference=lcnn)
        lcnn_ms, _ = fastest(export.load_exported(prefix), x, runs)
    dense_ms, _ = fastest(dense, x, runs)
    return dict(dense_ms=dense_ms, lcnn_ms=lcnn_ms, measured_speedup=dense_ms / lcnn_ms)
