"""Measured inference speed: an exported LCNN network (the C++ operator) against the same
network with dense layers, timed in the same process on the same input.

Both networks are exported and timed in four forms (:func:`forms`): hybridized with static
memory, plainly and after MXNet's oneDNN graph passes, and bound by MXNet's executor, after
those passes and plainly (as MXNet's C predict API binds it); the fastest counts (each network
at its best). Times are medians, so a noisy shared machine moves
them less than means, and all the forms are timed in turns (:func:`in_turns`), so that a slow
minute of a shared machine falls on all of them alike.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Callable, Dict, Sequence, Tuple

import mxnet as mx
from mxnet.gluon import HybridBlock

from . import identities

WARMUP_RUNS = 3  # untimed calls first: memory planning and oneDNN primitive creation
# Turns of in_turns: each form's timed calls in this many groups, the forms one after another
# (the speed of the shared machines measured here moved by 20-40% within minutes).
TURNS = 5
# Untimed calls at the start of each turn, for at least this long: after the other forms ran, a
# network's calls get faster for 10-15 ms of calls while the caches take its weights back
# (docs/platform.md). Users call one network repeatedly.
TURN_WARM_MS = 25.0


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


def forms(prefix: str, x: mx.nd.NDArray) -> Dict[str, Callable[[], mx.nd.NDArray]]:
    """Each form of the export at ``prefix`` that runs on ``x``, by name, as a call on ``x`` that
    returns the output, computed: ``plain`` (the ``SymbolBlock`` hybridized with static memory),
    ``oneDNN graph`` (the same after MXNet's oneDNN graph passes), ``executor`` (MXNet's
    symbolic executor on the graph after those passes, ``export.Predictor``: the batch copied in)
    and ``plain executor`` (the executor on the plain symbol, as MXNet's C predict API and
    ``lcnn-predict`` bind it; ResNet-18-accurate 0.05 at two threads, batch 1: 9.3-10.4 ms against
    10.1-10.7). Forms MXNet cannot run on ``x`` are left out (``export.trial``), and so is the
    plain executor where the executor already binds the plain symbol; the plain form stands."""
    from . import export  # export imports the model code; keep this module light

    def computed(out: mx.nd.NDArray) -> mx.nd.NDArray:
        out.wait_to_read()
        return out

    plain = export.load_exported(prefix)
    plain.hybridize(static_alloc=True, static_shape=True)
    calls = {"plain": lambda: computed(plain(x))}
    graph = export.load_exported(prefix)
    try:
        graph.optimize_for(x, backend="MKLDNN", static_alloc=True, static_shape=True)
        export.trial(lambda: graph(x))
        calls["oneDNN graph"] = lambda: computed(graph(x))
    except mx.base.MXNetError:  # the passes cannot take the graph, or MXNet cannot run it on x
        pass
    try:
        predictor = export.Predictor(prefix, x.shape)
        calls["executor"] = lambda: computed(predictor(x))
        if predictor.graph:
            plain_predictor = export.Predictor(prefix, x.shape, graph=False)
            calls["plain executor"] = lambda: computed(plain_predictor(x))
    except ValueError:  # (the executor cannot run the export on x)
        pass
    return calls


def warm(fn: Callable[[], None], ms: float = TURN_WARM_MS) -> int:
    """Call ``fn()`` untimed until ``ms`` milliseconds have passed (at least once); returns the
    number of calls."""
    start, calls = time.perf_counter(), 0
    while calls == 0 or (time.perf_counter() - start) * 1e3 < ms:
        fn()
        calls += 1
    return calls


def in_turns(networks: Dict[str, str], x: mx.nd.NDArray, runs: int,
             turns: int = TURNS) -> Dict[str, Tuple[float, str]]:
    """``{name: (ms, form)}``: each exported network (``{name: prefix}``) at its fastest form
    (:func:`forms`) on ``x``. Every form's median over ``runs`` timed calls, taken in ``turns``
    turns: in each turn every form first makes untimed calls for :data:`TURN_WARM_MS` (its caches
    warm again after the others ran, :func:`warm`), then its share of the calls."""
    calls = {(name, form): call for name, prefix in networks.items() for form, call in forms(prefix, x).items()}
    times = {key: [] for key in calls}
    for call in calls.values():
        for _ in range(WARMUP_RUNS):
            call()
    for turn in range(turns):
        for key, call in calls.items():
            warm(call)
            for _ in range(runs * (turn + 1) // turns - runs * turn // turns):
                start = time.perf_counter()
                call()
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
        timed = in_turns(dict(lcnn=prefix, dense=export_copy(dense, x, folder)), x, runs)
    dense_ms, lcnn_ms = timed["dense"][0], timed["lcnn"][0]
    return dict(dense_ms=dense_ms, lcnn_ms=lcnn_ms, measured_speedup=dense_ms / lcnn_ms)


def export_copy(net: HybridBlock, x: mx.nd.NDArray, folder: str) -> str:
    """``net`` hybridized and exported as it is into ``folder`` (run on ``x`` first), without the
    nodes that pass their input through at inference, as LCNN exports are (:mod:`.identities`);
    returns the prefix, for :func:`in_turns`."""
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, "copy")
    net.hybridize()
    net(x).wait_to_read()
    net.export(prefix)
    identities.drop_identities_file(prefix + "-symbol.json", x.shape[1:])
    return prefix
