"""The operator's parallel and batched plans give the dense layer's numbers: every lookup-layer
shape of the four presets, batch 1 and 16, 1 and 2 threads, every kernel set this host runs (a
fresh process per thread count and set: OpenMP reads the count at start, the library chooses
its kernels when it loads)."""
import json
import re
import textwrap

import pytest
from conftest import KERNEL_SETS, PY, run

# The lookup layers of the presets at their input sizes: (m, n, k, kernel, stride, pad, input size,
# form), form as in the networks: "relu", "pool 1" or "pool 0" (ReLU, then max pooling 3x3,
# stride 2, pad 1 as in ResNet or 0 as in AlexNet, fused) or "shortcut" (a ResNet block's
# shortcut added before ReLU). n is capped at 48 and fc6/fc7's k and
# m cut to keep the test short: n only lengthens the loop over channels, and every plan path
# (row and flat tiles, tile-major, gathers, products over the batch, phase splits, phases skipped,
# packed and in-place product strips, products in one pass (fc7 at batch 16: one strip of m =
# 1024 rows; stage 4 at batch 1: 512 rows of two strips, x in one chunk), compact rows) is still
# taken.
SHAPES = {
    "alexnet conv1": (3, 48, 3, 11, 4, 2, 224, "pool 0"), "alexnet conv2 fast": (64, 48, 30, 5, 1, 2, 27, "pool 0"),
    "alexnet conv2 accurate": (64, 48, 500, 5, 1, 2, 27, "pool 0"), "alexnet conv3": (192, 48, 30, 3, 1, 1, 13, "relu"),
    # two threads on one image split these 13x13 products by depth (Plan::split_depth), conv4's
    # deeper x (384 rows) in more than one pass
    "alexnet conv4": (384, 48, 30, 3, 1, 1, 13, "relu"),
    "alexnet conv5 accurate": (256, 48, 500, 3, 1, 1, 13, "pool 0"), "alexnet fc6": (256, 48, 64, 6, 1, 0, 6, "relu"),
    # fc6 of the accurate preset: at batch 16 its S (2.4 MB) is gathered in row blocks, each
    # thread's channels block by block
    "alexnet fc6 accurate": (256, 48, 1024, 6, 1, 0, 6, "relu"),
    "alexnet fc7": (1024, 48, 128, 1, 1, 0, 1, "relu"), "resnet conv1": (3, 48, 3, 7, 2, 3, 224, "pool 1"),
    "resnet stage1": (64, 48, 16, 3, 1, 1, 56, "shortcut"), "resnet stage2 stride": (64, 48, 32, 3, 2, 1, 56, "relu"),
    # class tiles (AVX-512 and avx2pair): 3 classes in row blocks, and 2 at stride 2
    "resnet stage1 accurate": (64, 48, 128, 3, 1, 1, 56, "shortcut"),
    "resnet stage2 stride accurate": (64, 48, 128, 3, 2, 1, 56, "relu"),
    "resnet stage2": (128, 48, 32, 3, 1, 1, 28, "shortcut"),
    "resnet stage3 accurate": (256, 48, 512, 3, 1, 1, 14, "shortcut"),
    # the fast preset's D there (64 rows: one block of the transposed product) is transposed by
    # each thread for itself at batch 1 (the accurate one's 8 blocks: each thread its 4)
    "resnet stage3": (256, 48, 64, 3, 1, 1, 14, "shortcut"),
    # the transposed product's 3 blocks, the last of 22 rows: one to the first of two threads, two to
    # the second
    "transposed blocks uneven": (32, 16, 150, 3, 1, 1, 9, "relu"),
    "resnet stage4": (512, 48, 128, 3, 1, 1, 7, "shortcut"),
    # kernels narrower than their stride reach only some phases: the export's 1x1 shortcut
    # (one phase), and a 2x2 kernel of stride 3 (two runs of two phases)
    "resnet shortcut": (64, 48, 128, 1, 2, 0, 56, "relu"), "kernel 2 stride 3": (16, 8, 24, 2, 3, 1, 20, "relu"),
    # the export's form of a plain 1x1 strided convolution (P = I, coefficients 1, bias 0 in a
    # residual block): its product is its output (Plan::identity_lookups); odd output rows
    "plain shortcut": (64, 48, 48, 1, 2, 0, 29, "plain"),
    # rows cut into several row-tile segments with a masked last register, on both widths
    "wide rows": (8, 8, 16, 3, 1, 1, 206, "shortcut"),
    # small maps take one product over the batch: pooled, with few dictionary rows used, and with
    # an S so large (1.5 MB an image) that batch 16 takes two products, or is not interleaved
    "small pooled": (32, 16, 40, 3, 1, 1, 8, "pool 1"), "small compact": (24, 2, 600, 3, 1, 1, 7, "relu"),
    "small in groups": (16, 8, 4096, 3, 1, 1, 7, "shortcut"),
    # interleaved images' channels without entries (k = 2 at 1x1), with their bias and shortcut,
    # 49 pixels: transposed in blocks of a register's lanes and a tail of one
    "small constant channels": (8, 16, 2, 1, 1, 0, 7, "shortcut"),
    # rows of D 4 KB apart, in L1's same sets: AVX-512's panels skewed, over two-register strips in
    # passes (fc7 above: one strip in one pass)
    "rows in one L1 set": (1024, 16, 240, 1, 1, 0, 8, "relu"),
    # batch 1: a matrix-vector product whose rows end in a group of fewer than kMatVecRows, and
    # whose m ends in a part of a register
    "fc tails": (37, 20, 13, 1, 1, 0, 1, "relu"),
    # an odd number of rows, and channels without entries (k = 2 at 1x1: about half of them),
    # with and without a shortcut
    "odd rows": (16, 24, 6, 3, 1, 1, 29, "shortcut"),
    "constant channels": (8, 16, 2, 1, 1, 0, 29, "shortcut"),
    "constant channels, relu": (8, 16, 2, 1, 1, 0, 30, "relu"),
    # fully connected layers (LookupDense, and a plain Dense as the classifier runs: D = W) take
    # their dictionary transposed, on inputs of which about half are zero: at batch 1 the
    # product skips those rows (full and partial column blocks, on each set's register width),
    # in a batch it runs with the images as its rows
    "alexnet fc7 dense": (1024, 48, 128, 1, 1, 0, 1, "dense"),
    "classifier": (1024, 300, 300, 1, 1, 0, 1, "classifier"),
    "dense tails": (37, 20, 13, 1, 1, 0, 1, "dense"),
}
# Batches: 1 and 16; maps of at most SMALL_MAP pixels a side also 19, a batch that ends in a
# group of fewer images than a register's lanes when the images are interleaved.
SMALL_MAP = 8

SCRIPT = textwrap.dedent("""
    import json, sys
    import mxnet as mx
    import numpy as np
    from mxnet import gluon
    from lcnn_gluon import export, ops
    from lcnn_gluon import nn as lnn
    print("kernels", ops.kernel_isa())
    errors = {}
    SMALL_MAP = int(sys.argv[2])
    for name, (m, n, k, kernel, stride, pad, size, form) in json.loads(sys.argv[1]).items():
        fc = form in ("dense", "classifier")
        if form == "classifier":
            layer = gluon.nn.Dense(n, in_units=m)
            layer.initialize()
        elif form == "plain":
            layer = gluon.nn.Conv2D(n, kernel, stride, pad, in_channels=m, use_bias=False)
            layer.initialize()
        else:
            layer = (lnn.LookupDense(n, dictionary_size=k, in_units=m) if fc else
                     lnn.LookupConv2D(n, kernel, stride, pad, dictionary_size=k, in_channels=m))
            layer.initialize()
            lnn.set_random_lookup(layer, 0.05 if k > 8 else 0.3, seed=m + n + k)
        if form != "plain":
            layer.bias.set_data(mx.nd.random.normal(shape=(n,)))
        pool_pad = int(form[-1]) if form.startswith("pool") else None
        pool = gluon.nn.MaxPool2D(3, 2, pool_pad) if pool_pad is not None else None
        op = export.SparseLookup(layer, None, None, form not in ("shortcut", "plain"), pool)
        if form == "shortcut":
            op.add_residual()
        if fc:
            assert op.attrs["dictionary_layout"] == "mk" and op.dictionary.shape == (m, k)
        for batch in (1, 16, 19) if size <= SMALL_MAP else (1, 16):
            x = mx.nd.random.normal(shape=(batch, m) if fc else (batch, m, size, size))
            if fc:  # half of the inputs zero, the others of both signs
                x = x * (mx.nd.random.uniform(shape=x.shape) < 0.5)
            y = layer(x)
            shortcut = mx.nd.random.normal(shape=y.shape)
            ref = y if form == "plain" else mx.nd.relu(y + shortcut if form == "shortcut" else y)
            if pool:
                ref = mx.nd.Pooling(ref, kernel=(3, 3), stride=(2, 2), pad=(pool_pad, pool_pad), pool_type="max")
            ref = ref.asnumpy()
            out = (op(x, shortcut) if form == "shortcut" else op(x)).asnumpy()
            errors[f"{name} batch {batch}"] = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-6))
    # new indices with the same indptr, at the same address, in a layer large enough (about
    # 88K entries) for the threads to compare the content together: the plan must follow them
    layer = lnn.LookupConv2D(64, 3, 1, 1, dictionary_size=512, in_channels=64)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=0)
    op = export.SparseLookup(layer, None, None, False)
    op.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(1, 64, 7, 7))
    op(x).wait_to_read()
    p = np.roll(layer.lookup.data().asnumpy(), 1, axis=1)  # every entry to the next dictionary row
    layer.lookup.set_data(mx.nd.array(p))
    layer.alive.set_data(mx.nd.array(p != 0, dtype=layer.alive.dtype))
    moved = export.SparseLookup(layer, None, None, False)
    assert (moved.indptr.data().asnumpy() == op.indptr.data().asnumpy()).all()
    for name in ("indptr", "indices", "coefs"):
        getattr(op, name).set_data(getattr(moved, name).data())
    ref = layer(x).asnumpy()
    errors["new content"] = float(np.abs(op(x).asnumpy() - ref).max() / np.abs(ref).max())
    # a plain layer's plan kept while its values change: the product is the output only on calls
    # with coefficients 1 and biases 0
    layer = gluon.nn.Conv2D(40, 1, 2, in_channels=24, use_bias=False)
    layer.initialize()
    op = export.SparseLookup(layer, None, None, False)
    op.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.normal(shape=(3, 24, 14, 14))
    identity = ops.plans_built("identity lookups")
    for name, coef, bias in (("unit values", 1.0, 0.0), ("new values", 2.0, 0.5), ("unit values again", 1.0, 0.0)):
        op.coefs.set_data(mx.nd.full(op.coefs.shape, coef))
        op.bias.set_data(mx.nd.full(op.bias.shape, bias))
        ref = (layer(x) * coef + bias).asnumpy()
        errors[name] = float(np.abs(op(x).asnumpy() - ref).max() / np.abs(ref).max())
    print("identity lookups", ops.plans_built("identity lookups") - identity)
    print("transposed product", ops.plans_built("transposed product"))
    print("split depth", ops.plans_built("split depth"))
    print(json.dumps(errors))
""")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("threads", ["1", "2"])
def test_parallel_and_batched_plans_equal_the_dense_layer(lcnn_ops, threads, isa):
    out = run(PY, "-c", SCRIPT, json.dumps(SHAPES), str(SMALL_MAP), env={"OMP_NUM_THREADS": threads, "LCNN_ISA": isa},
              timeout=900).stdout
    assert f"kernels {isa}" in out
    # small maps take the transposed product where the set has it (kTransposedPixels)
    transposed = int(re.search(r"transposed product (\d+)", out).group(1))
    assert (transposed > 0) == (isa != "avx2"), transposed
    # threads sharing one image split small maps' products by depth, on every set
    split = int(re.search(r"split depth (\d+)", out).group(1))
    assert (split > 0) == (threads == "2"), split
    # the plain layer's state built its plan once, and knew its P for the identity
    assert re.search(r"identity lookups (\d+)", out).group(1) == "1"
    errors = json.loads(out.strip().splitlines()[-1])
    small = sum(shape[6] <= SMALL_MAP for shape in SHAPES.values())
    assert len(errors) == 2 * len(SHAPES) + small + 1 + 3
    bad = {name: e for name, e in errors.items() if not e <= 1e-4}
    assert not bad, bad
