"""Per-layer profile of one cell of ``bench_inference.py`` (``--layers MODEL``): where the time of
the exported network goes, and how close each layer's lookup stage is to the machine's limits.

Per lookup layer, at the cell's batch and threads: the dense layer (oneDNN), the operator, the
operator with one entry per dictionary vector (its dictionary stage alone: the lookup stage has
next to nothing to do), the lookup stage's useful GFLOP/s against the FMA peak of the threads
used and against the lookup ceiling (the operator's tile kernel alone with S in L1; both from
``machine.py``), and the bytes the operator moves per output element: the dictionary
stage reads the input and writes S; the lookup stage reads ``nnz / n`` S values per output.
Every layer is timed on the operator, also those the export runs dense (marked "exported
dense": their lookup form counts more than the dense layer), and counted as a lookup layer.

Each layer's weights in inference form (D and the packed P) and both whole networks' weights
are given with the time they take to read from memory at the machine's read bandwidth
(``machine.py``, the cell's threads): at batch 1 every weight is read once per call,
from memory when the network's weights exceed the caches, so that time is a floor under the
call whatever the kernels do.

Last, both whole networks are timed at the cell's input and at a small one (``SMALL_SIDE``,
for networks that take any input size): an upper bound on what does not shrink with the
image (MXNet's dispatch of its operators, the Python call, its weights, each layer's fixed
costs), a floor that the kernels' speed does not move. Only a bound: the small maps also
take the operator's paths for a few outputs, slower per multiply-add.

Then the bound the kernels' ceilings put on the cell (``ceiling_bound``): measured/counted if
the dictionary products and the layers run dense went at the dense network's own rate, the
lookups at the lookup ceiling, and nothing else took time. A cell below its goal with a bound
above it falls short on what the count leaves out (epilogues, copies, dispatch), not on the
multiply-adds' ceilings.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np


# The lookup stage's time is the operator's minus its dictionary stage's; below this share of
# the operator's time the difference is within the run-to-run noise and no rate is given (nor
# when it would be above the lookup ceiling: a difference that small is noise too).
MIN_LOOKUP_SHARE = 0.05
# The small input's side for the networks' floor: 32x32 has 1/49 of 224x224's pixels, and a
# ResNet-18 still keeps a map of at least 1x1 in every stage.
SMALL_SIDE = 32
# A layer timed alone gets a new output array every call. glibc maps allocations above its mmap
# threshold (32 MB at most) afresh each time, and the first write faults every page in: ResNet-18's
# conv1 at batch 16 (a 51 MB output) took 54 ms dense and 31 ms on the operator alone, about 25 of
# them clearing pages. Inside a hybridized network the buffers are allocated once. So the
# profile's process takes all its memory from the heap and never gives it back.
HEAP_ONLY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2 ** 62)}


def weights_mb(block) -> float:
    """Megabytes of ``block``'s parameters (all of them are read in every call, but for the rows of
    a fully connected layer's transposed dictionary whose input is zero at batch 1)."""
    return sum(p.data().size * np.dtype(p.data().dtype).itemsize for p in block.collect_params().values()) / 1e6


def profile_cell(name: str, density: str, threads: int, batch: int, runs: int) -> None:
    # threads are fixed when mxnet loads, the allocator's settings when the process starts
    settings = dict(OMP_NUM_THREADS=str(threads), MXNET_ENGINE_TYPE="NaiveEngine", **HEAP_ONLY)
    if any(os.environ.get(key) != value for key, value in settings.items()):
        sys.exit(subprocess.run([sys.executable] + sys.argv, env=dict(os.environ, **settings)).returncode)
    import mxnet as mx
    import machine
    from bench_inference import SHAPE, build

    from lcnn_gluon.speed import export_copy, in_turns, median_ms
    from mxnet.gluon import nn

    from lcnn_gluon import export, flops, ops
    from lcnn_gluon import nn as lnn
    from lcnn_gluon.lookup import cost, rule
    ops.load()
    peak, bandwidth = machine.fma_peak() * threads, machine.memory_bandwidth(threads)
    ceiling = machine.lookup_ceiling() * threads
    dense_net, lcnn, layers = build(name, density)
    counts = {r.name: r for r in flops.count(layers)}
    print(f"{name}, density {density}, batch {batch}, {threads} threads; FMA peak {peak:.0f} GFLOP/s, "
          f"lookup ceiling {ceiling:.0f} GFLOP/s (S in L1), memory read bandwidth {bandwidth:.1f} GB/s\n")
    print("| layer | density | dense ms | LCNN ms | dictionary stage ms | lookup stage GFLOP/s (of peak, of ceiling) "
          "| bytes/output: dictionary, lookup | weights MB (ms from memory) | measured | counted |\n"
          + "| --- " * 10 + "|")
    for lay in (lay for lay in layers if isinstance(lay.block, lnn._Lookup)):
        b, c = lay.block, counts[lay.name]
        x = mx.nd.random.normal(shape=(batch,) + lay.in_shape)
        fc = lnn.is_fully_connected(b, lay.in_shape)
        strides, padding = ((1, 1), (0, 0)) if isinstance(b, lnn.LookupDense) else (b.strides, b.padding)
        dense = (nn.Dense(b.channels, in_units=int(np.prod(lay.in_shape))) if fc else
                 nn.Conv2D(b.channels, b.kernel, strides, padding, in_channels=lay.in_shape[0]))
        dense.initialize()
        with tempfile.TemporaryDirectory() as folder:
            dense_ms = in_turns(dict(dense=export_copy(dense, x, folder)), x, runs)["dense"][0]
        ours = export.SparseLookup(b, None, None, False)
        ours.hybridize(static_alloc=True, static_shape=True)
        ours_ms = median_ms(lambda: ours(x).wait_to_read(), runs)
        lookup, alive = b.lookup.data().copy(), b.alive.data().copy()
        one = np.zeros(lookup.shape, np.float32)
        k = b.dictionary_size
        one.reshape(one.shape[0], k, -1)[np.arange(k) % one.shape[0], np.arange(k), 0] = 1.0
        b.lookup.set_data(mx.nd.array(one))
        b.alive.set_data(mx.nd.array(one != 0, dtype=rule.ALIVE_DTYPE))
        stage1 = export.SparseLookup(b, None, None, False)
        b.lookup.set_data(lookup)
        b.alive.set_data(alive)
        stage1.hybridize(static_alloc=True, static_shape=True)
        stage1_ms = median_ms(lambda: stage1(x).wait_to_read(), runs)
        nnz = float(np.count_nonzero(ours.coefs.data().asnumpy()))
        outputs = int(np.prod(lay.out_shape))
        in_elems = int(np.prod(lay.in_shape))
        stage2_ms = ours_ms - stage1_ms
        gflops = 2 * nnz / b.channels * outputs * batch / stage2_ms / 1e6
        measurable = stage2_ms >= MIN_LOOKUP_SHARE * ours_ms and gflops <= ceiling
        rate = f"{gflops:.1f} ({gflops / peak:.0%}, {gflops / ceiling:.0%})" if measurable else "- (below the noise)"
        counted = c.dense / cost.lookup_mults(b, lay.in_shape, outputs, c.density)
        name = lay.name + (" (exported dense)" if c.as_dense else "")
        dict_bytes = 4 * (in_elems + k * outputs / b.channels * b.kernel[0] * b.kernel[1]) / outputs
        mb = weights_mb(ours)
        print(f"| {name} | {c.density:.4f} | {dense_ms:.3f} | {ours_ms:.3f} | {stage1_ms:.3f} | "
              f"{rate} | {dict_bytes:.0f}, {4 * (nnz / b.channels + 1):.0f} | {mb:.2f} ({mb / bandwidth:.2f}) | "
              f"{dense_ms / ours_ms:.1f}x | {counted:.1f}x |")
    inference = export.sparsify(lcnn, SHAPE)
    for net in (dense_net, inference):
        net(mx.nd.zeros((1,) + SHAPE)).wait_to_read()  # deferred parameters take their shapes
    dense_mb, lcnn_mb = weights_mb(dense_net), weights_mb(inference)
    print(f"\nWeights of the whole networks, read once per call (at most: at batch 1 the LCNN network's fully "
          f"connected layers skip the rows of zero inputs): dense {dense_mb:.1f} MB "
          f"({dense_mb / bandwidth:.2f} ms from memory), LCNN in inference form {lcnn_mb:.1f} MB "
          f"({lcnn_mb / bandwidth:.2f} ms): {dense_mb / lcnn_mb:.1f}x fewer bytes.")
    dense_ms, lcnn_ms = whole_networks(dense_net, inference, batch, runs)
    bound, shares = ceiling_bound(layers, counts, dense_ms, batch, ceiling)
    measured = dense_ms / lcnn_ms / flops.speedup(list(counts.values()))
    print(f"\nBound from the kernels' ceilings: of the dense count, {shares[0]:.1%} is left to dictionary products "
          f"and layers run dense, {shares[1]:.2%} to lookups. With the first at the dense network's rate "
          f"({shares[2]:.0f} GFLOP/s, the whole network's), the lookups at the lookup ceiling ({ceiling:.0f} "
          f"GFLOP/s) and nothing else taking time, measured/counted would be {bound:.2f}. Measured: {measured:.2f}.")


def ceiling_bound(layers: list, counts: dict, dense_ms: float, batch: int, lookup_gflops: float) -> tuple:
    """The measured/counted an exported network would reach if its dictionary products and its
    dense-run layers ran at the dense network's own rate (its counted multiply-adds over its
    time ``dense_ms``), its lookups at ``lookup_gflops`` and nothing else took time:
    ``(P + L) / (P + L * dense_rate / lookup_gflops)`` for P and L the multiplications of the
    two kinds. ``layers`` and ``counts`` (by layer name) are :mod:`lcnn_gluon.flops`'s trace and
    count of one image. Returns that, and (P / dense count, L / dense count, the dense rate in
    GFLOP/s)."""
    from lcnn_gluon import nn as lnn
    from lcnn_gluon.lookup import cost
    dense_total = products = lookups = 0
    for lay in layers:
        c = counts[lay.name]
        dense_total += c.dense
        if isinstance(lay.block, lnn._Lookup) and not c.as_dense:
            product = cost.product_mults(lay.block, lay.in_shape)
            products, lookups = products + product, lookups + c.lcnn - product
        else:
            products += c.lcnn
    dense_rate = 2 * dense_total * batch / dense_ms / 1e6
    bound = (products + lookups) / (products + lookups * dense_rate / lookup_gflops)
    return bound, (products / dense_total, lookups / dense_total, dense_rate)


def operator_count(symbol_file: str) -> int:
    """Operators (nodes other than variables) of an exported symbol."""
    with open(symbol_file) as f:
        return sum(node["op"] != "null" for node in json.load(f)["nodes"])


def whole_networks(dense_net, inference, batch: int, runs: int) -> tuple:
    """Both whole networks (their fastest form, in turns; the LCNN one exported as the grid
    exports it, with chains) at the cell's input and at SMALL_SIDE; returns their medians (ms) at
    the cell's input, dense first."""
    import mxnet as mx
    from bench_inference import SHAPE

    from lcnn_gluon import export, ops
    from lcnn_gluon.speed import export_copy, in_turns
    full = mx.nd.random.normal(shape=(batch,) + SHAPE)
    small = mx.nd.random.normal(shape=(batch, SHAPE[0], SMALL_SIDE, SMALL_SIDE))
    with tempfile.TemporaryDirectory() as folder:
        prefixes = dict(dense=export_copy(dense_net, full[:1], os.path.join(folder, "dense")),
                        lcnn=os.path.join(folder, "lcnn"))
        export.export(inference, prefixes["lcnn"], SHAPE, dict(library=ops.LIBRARY))  # as the grid's
        operators = {name: operator_count(prefix + "-symbol.json") for name, prefix in prefixes.items()}
        at_full = in_turns(prefixes, full, runs)
        try:
            at_small = in_turns(prefixes, small, runs)
        except mx.base.MXNetError:  # a fixed input size (AlexNet's fully connected layers)
            at_small = None
    print(f"\nWhole networks at {SHAPE[1]}x{SHAPE[2]}: dense {at_full['dense'][0]:.2f} ms "
          f"({operators['dense']} operators), LCNN {at_full['lcnn'][0]:.2f} ms ({operators['lcnn']} operators).", end="")
    if at_small is None:
        print(f" At {SMALL_SIDE}x{SMALL_SIDE}: not timed, the network takes only its own input size.")
        return at_full["dense"][0], at_full["lcnn"][0]
    share = at_small["lcnn"][0] / at_full["lcnn"][0]
    print(f" At {SMALL_SIDE}x{SMALL_SIDE} ({SMALL_SIDE ** 2 / (SHAPE[1] * SHAPE[2]):.0%} of the pixels): "
          f"dense {at_small['dense'][0]:.2f} ms, LCNN {at_small['lcnn'][0]:.2f} ms, {share:.0%} of its time "
          f"at {SHAPE[1]}x{SHAPE[2]}: at most that much of it does not shrink with the image.")
    return at_full["dense"][0], at_full["lcnn"][0]
