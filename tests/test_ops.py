"""The C++ operator lcnn_lookup_conv against the training-form layer, and its errors."""
import re

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon

from lcnn_gluon import export, ops
from lcnn_gluon import nn as lnn
from lcnn_gluon.lookup.packed import PackedLookup

SHAPES = [  # (m, n, k, kernel, stride, pad, size)
    (6, 8, 4, 1, 1, 0, 9), (5, 7, 3, 3, 1, 1, 10), (5, 7, 3, 3, 2, 1, 11), (4, 6, 5, 5, 2, 2, 13),
    (3, 16, 3, 11, 4, 2, 35), (6, 5, 4, 3, 4, 0, 17), (8, 16, 6, 3, 4, 1, 19), (7, 9, 5, 5, 1, 0, 9),
    (8, 16, 6, 6, 1, 0, 6),  # fc6-style: a 6x6 kernel on the 6x6 map
    (6, 8, 5, 3, 1, 0, 4),  # few outputs in two extended rows, each with columns past wo skipped
    (6, 8, 5, 3, 1, 1, 3),  # few outputs of a padded input (its values moved to their padded positions)
    # wide stride-4 and stride-2 rows (the vectorised deinterleaves and their tails), splitting X (k > m) or S (k < m)
    # first; on a 7x7 map with k > m the product comes first all the same (its padding costs more)
    (16, 6, 64, 3, 1, 1, 7),
    # (stride 2: pads 0 to 3, blocks of 16 columns, a half block of 8 and odd tails)
    (5, 8, 8, 11, 4, 2, 99), (8, 8, 3, 5, 4, 1, 70), (5, 8, 8, 7, 2, 3, 61), (9, 8, 4, 3, 2, 1, 40),
    (5, 6, 3, 3, 2, 0, 23),
    # inputs of at most 4 channels at a stride (the product row by row, split as it goes): wide rows
    # at strides 4 and 2, strides 3 and 4, and a kernel narrower than its stride (rows of unreached
    # phases skipped)
    (3, 8, 4, 11, 4, 2, 99), (3, 8, 4, 7, 2, 3, 61), (2, 6, 5, 3, 3, 1, 14), (4, 5, 3, 2, 3, 0, 17),
    (1, 4, 2, 5, 4, 1, 30),
    (8, 12, 64, 3, 1, 1, 40),  # S over 256 KB, 16+ entries a channel: tile position by position
    # 1x1 at a stride, unpadded (ResNet's shortcuts): the product gathers X's pixels at the stride,
    # on odd maps (a last pixel of each row), rows wider than a register, strides 2 and 3
    (8, 12, 6, 1, 2, 0, 13), (6, 9, 40, 1, 2, 0, 40), (5, 7, 4, 1, 3, 0, 17),
    # stride 1 on maps of at most 14 columns with 64+ dictionary rows (the product transposed):
    # rows of two pieces (14) and of a piece and a part (9), a last block of few rows (130), a 1x1
    (24, 10, 80, 3, 1, 1, 14), (20, 9, 70, 3, 1, 1, 9), (12, 8, 130, 1, 1, 0, 5), (40, 6, 64, 3, 1, 1, 7),
]
# Shapes whose S rows the kernel sets with class tiles (avx512, avx2pair) align to registers, and
# whether they then take class tiles (docs/design.md):
ALIGNED_SHAPES = [
    ((8, 12, 64, 3, 1, 1, 44), True),   # tile-major, 3 tap columns (classes), rows of 46 -> 48
    ((8, 12, 64, 3, 2, 1, 60), True),   # stride 2: 2 classes, phase rows of 31 -> 32
    ((8, 12, 512, 1, 1, 0, 60), True),  # 1x1: one class, nothing to shift; rows of 60 -> 64
    # (tiles that end inside a row: a shift's junk lanes would not fall in its unkept columns)
    ((8, 12, 64, 5, 1, 2, 41), True),   # 5x5: 5 classes, rows of 45 -> 48, five tiles of 25
    ((4, 6, 80, 11, 1, 5, 21), True),   # 11 classes (10 shifts), rows of 31 -> 32, two tiles of 21
    ((8, 12, 400, 3, 1, 1, 13), True),  # a 13x13 map: the plane in one tile, rows of 15 -> 16
    ((8, 12, 4, 3, 1, 1, 56), False),   # few entries a channel: row tiles on rows of 58 -> 64
    ((8, 12, 512, 1, 2, 0, 60), True),  # a 1x1 shortcut's gathered pixels on rows of 30 -> 32
]
SHAPES += [shape for shape, _ in ALIGNED_SHAPES]


def compare(layer, x, scale=None, shift=None, relu=False):
    ref = layer(x)
    if scale is not None:
        ref = ref * mx.nd.array(scale).reshape((1, -1, 1, 1)) + mx.nd.array(shift).reshape((1, -1, 1, 1))
    if relu:
        ref = mx.nd.relu(ref)
    out = export.SparseLookup(layer, scale, shift, relu)(x)
    assert out.shape == ref.shape
    err = float((out - ref).abs().max().asscalar()) / max(float(ref.abs().max().asscalar()), 1e-12)
    assert err <= 1e-4, err


def random_layer(m, n, k, kernel, stride, pad, size):
    """A lookup layer of density 0.3 with a random bias and output channel 1 without lookups."""
    mx.random.seed(size)
    layer = lnn.LookupConv2D(n, kernel, stride, pad, dictionary_size=k, in_channels=m)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=size)
    alive = layer.alive.data().asnumpy()
    alive[1] = 0  # an output channel with no lookups
    layer.alive.set_data(mx.nd.array(alive, dtype="uint8"))
    layer.lookup.set_data(layer.lookup.data() * layer.alive.data().astype("float32"))
    layer.bias.set_data(mx.nd.random.normal(shape=(n,)))
    return layer


@pytest.mark.parametrize("batch", [1, 8])
@pytest.mark.parametrize("m,n,k,kernel,stride,pad,size", SHAPES)
def test_op_equals_training_form(lcnn_ops, m, n, k, kernel, stride, pad, size, batch):
    layer = random_layer(m, n, k, kernel, stride, pad, size)
    compare(layer, mx.nd.random.normal(shape=(batch, m, size, size)))


@pytest.mark.parametrize("shape,class_tiles", ALIGNED_SHAPES)
def test_aligned_rows_and_class_tiles_where_the_kernels_have_them(lcnn_ops, shape, class_tiles):
    """The plan of each ALIGNED_SHAPES layer aligns S's rows (and takes class tiles) with the
    kernel sets that have class tiles, and not with plain AVX2; its output is right either way."""
    m, size = shape[0], shape[-1]
    layer = random_layer(*shape)
    kinds = ("any", "aligned rows", "class tiles")
    before = {kind: ops.plans_built(kind) for kind in kinds}
    compare(layer, mx.nd.random.normal(shape=(2, m, size, size)))
    built = {kind: ops.plans_built(kind) - before[kind] for kind in kinds}
    has = ops.kernel_isa() in ("avx512", "avx2pair")
    assert built == {"any": 1, "aligned rows": int(has), "class tiles": int(has and class_tiles)}, ops.kernel_isa()


@pytest.mark.parametrize("density,halved", [(0.03, True), (0.3, False)])
def test_class_tiles_halved_where_a_row_block_outgrows_l1(lcnn_ops, density, halved):
    """Few entries a channel allow few row blocks: where one block's S segments would span more
    than L1, the class tiles take half the registers (kClassBlockSpanBytes); with many entries
    the blocks fit and the tiles stay whole. The output is right either way."""
    layer = lnn.LookupConv2D(12, 3, 1, 1, dictionary_size=256, in_channels=8)
    layer.initialize()
    lnn.set_random_lookup(layer, density, seed=3)
    kinds = ("class tiles", "halved class tiles")
    before = {kind: ops.plans_built(kind) for kind in kinds}
    compare(layer, mx.nd.random.normal(shape=(2, 8, 44, 44)))
    built = {kind: ops.plans_built(kind) - before[kind] for kind in kinds}
    has = ops.kernel_isa() in ("avx512", "avx2pair")
    assert built == {"class tiles": int(has), "halved class tiles": int(has and halved)}, ops.kernel_isa()


@pytest.mark.parametrize("k,size,kernel,several", [(30, 27, 5, True), (400, 7, 3, False)])
def test_s_beyond_l1_goes_tile_by_tile_where_the_plane_spans_several_tiles(lcnn_ops, k, size, kernel, several):
    """S of 96-256 KB (kTileMajorSeveralTilesMinFloats): a 27x27 plane of several tiles is
    accumulated tile by tile (class tiles, on the kernel sets that have them); a 7x7 plane, one
    tile, channel by channel (neither class tiles nor row blocks). The output is right either way."""
    layer = lnn.LookupConv2D(12, kernel, 1, kernel // 2, dictionary_size=k, in_channels=8)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.1, seed=4)
    kinds = ("class tiles", "row blocks")
    before = {kind: ops.plans_built(kind) for kind in kinds}
    compare(layer, mx.nd.random.normal(shape=(2, 8, size, size)))
    built = {kind: ops.plans_built(kind) - before[kind] for kind in kinds}
    has = ops.kernel_isa() in ("avx512", "avx2pair")
    if several:
        assert built["class tiles"] == int(has), (ops.kernel_isa(), built)
    else:
        assert built == {"class tiles": 0, "row blocks": 0}, (ops.kernel_isa(), built)


@pytest.mark.parametrize("density", [0.0, 1.0], ids=["all-zero P", "dense P"])
def test_extreme_densities(lcnn_ops, density):
    layer = lnn.LookupConv2D(6, 3, 1, 1, dictionary_size=4, in_channels=5, initial_sparsity=0.0)
    layer.initialize()
    lnn.set_random_lookup(layer, density)
    layer.bias.set_data(mx.nd.arange(6))
    compare(layer, mx.nd.random.normal(shape=(2, 5, 7, 7)))


@pytest.mark.parametrize("k,size", [(64, 40), (160, 20)])
def test_entries_in_any_order_give_the_same_output(lcnn_ops, k, size):
    """S over 256 KB with 16+ entries a channel: tiles accumulate S's rows in blocks that fit L1,
    the entries regrouped by block whatever their packed order, which must not change the result."""
    layer = lnn.LookupConv2D(12, 3, 1, 1, dictionary_size=k, in_channels=8)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=k)
    packed = PackedLookup.pack(layer.effective_lookup().asnumpy(), layer.dictionary.data().asnumpy(),
                               np.random.RandomState(0).normal(size=12).astype(np.float32))
    x = mx.nd.random.normal(shape=(2, 8, size, size))

    def run(indices, coefs):
        args = [mx.nd.array(a, dtype=a.dtype) for a in (packed.dictionary, packed.indptr, indices, coefs, packed.bias)]
        return mx.nd.lcnn_lookup_conv(x, *args, kernel=(3, 3), pad=(1, 1), num_filter=12, act="relu").asnumpy()

    blocked = ops.plans_built("row blocks")
    ordered = run(packed.indices, packed.coefs)
    assert ops.plans_built("row blocks") == blocked + 1
    ref = mx.nd.relu(layer(x) + mx.nd.array(packed.bias).reshape((1, -1, 1, 1))).asnumpy()
    np.testing.assert_allclose(ordered, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    order = np.concatenate([np.random.RandomState(f).permutation(np.arange(a, b))
                            for f, (a, b) in enumerate(zip(packed.indptr[:-1], packed.indptr[1:]))])
    np.testing.assert_allclose(run(packed.indices[order], packed.coefs[order]), ordered, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch", [8, 3])
def test_a_fully_connected_batch_in_row_blocks(lcnn_ops, batch):
    """fc6-style (a 6x6 kernel on a 6x6 map) over a batch whose S, the images side by side,
    exceeds one block of rows (kGatherBlockBytes, 512 KB): each channel's sum is taken block by
    block, the entries regrouped by block whatever their packed order, into the same output."""
    k, n = 720, 10
    layer = lnn.LookupConv2D(n, 6, 1, 0, dictionary_size=k, in_channels=4)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=batch)
    packed = PackedLookup.pack(layer.effective_lookup().asnumpy(), layer.dictionary.data().asnumpy(),
                               np.random.RandomState(1).normal(size=n).astype(np.float32))
    x = mx.nd.random.normal(shape=(batch, 4, 6, 6))

    def run(indices, coefs):
        args = [mx.nd.array(a, dtype=a.dtype) for a in (packed.dictionary, packed.indptr, indices, coefs, packed.bias)]
        return mx.nd.lcnn_lookup_conv(x, *args, kernel=(6, 6), num_filter=n, act="relu").asnumpy()

    blocked = ops.plans_built("row blocks")
    ordered = run(packed.indices, packed.coefs)
    assert ops.plans_built("row blocks") == blocked + (1 if k * 36 * batch * 4 > 512 << 10 else 0)
    ref = mx.nd.relu(layer(x) + mx.nd.array(packed.bias).reshape((1, -1, 1, 1))).asnumpy()
    np.testing.assert_allclose(ordered, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    order = np.concatenate([np.random.RandomState(f).permutation(np.arange(a, b))
                            for f, (a, b) in enumerate(zip(packed.indptr[:-1], packed.indptr[1:]))])
    np.testing.assert_allclose(run(packed.indices[order], packed.coefs[order]), ordered, rtol=1e-5, atol=1e-5)


def test_new_coefficients_of_the_same_entries_are_used(lcnn_ops):
    """A plan that reads the coefficients in an order of its own (row blocks) gathers them again
    only when they change: new values for the same entries, all of them or only the last one, set
    into the hybridized operator's array, must be used, without a new plan."""
    layer = lnn.LookupConv2D(12, 3, 1, 1, dictionary_size=64, in_channels=8)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=5)
    layer.bias.set_data(mx.nd.random.normal(shape=(12,)))
    x = mx.nd.random.normal(shape=(1, 8, 40, 40))
    op = export.SparseLookup(layer, None, None, False)
    op.hybridize(static_alloc=True, static_shape=True)
    blocked, built = ops.plans_built("row blocks"), ops.plans_built()
    np.testing.assert_allclose(op(x).asnumpy(), layer(x).asnumpy(), rtol=1e-4, atol=1e-4)
    assert (ops.plans_built("row blocks"), ops.plans_built()) == (blocked + 1, built + 1)
    p = layer.lookup.data().asnumpy()
    last = np.flatnonzero(layer.effective_lookup().asnumpy())[-1]
    for change in ("all", "last"):
        if change == "all":
            p *= 2.0
        else:
            p.flat[last] *= -3.0
        layer.lookup.set_data(mx.nd.array(p))
        fresh = export.SparseLookup(layer, None, None, False)
        np.testing.assert_array_equal(fresh.indices.data().asnumpy(), op.indices.data().asnumpy())
        op.coefs.set_data(fresh.coefs.data())
        ref = layer(x).asnumpy()
        np.testing.assert_allclose(op(x).asnumpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max(), err_msg=change)
    assert ops.plans_built() == built + 1


SPARSE_SHAPES = [  # (m, n, k, kernel, stride, pad, size)
    (16, 32, 24, 6, 1, 0, 6),   # fc6-style: only the S values P reads are computed
    (64, 32, 16, 1, 1, 0, 1),   # fc7-style 1x1 on a 1x1 map
    (37, 20, 13, 1, 1, 0, 1),   # the same with tails: 13 rows, 37 inputs
    (12, 16, 20, 3, 1, 1, 9),   # only the dictionary entries P refers to
    (8, 16, 6, 5, 4, 2, 37),
    (8, 12, 6, 3, 1, 1, 29),    # an odd number of rows, most channels without entries
]


def set_entries(layer, count: int, rows: int, seed: int) -> None:
    """Exactly ``count`` live entries in P, all in the first ``rows`` dictionary entries."""
    rng = np.random.RandomState(seed)
    n, k, kh, kw = layer.lookup.shape
    p = np.zeros((n, k, kh, kw), np.float32)
    flat = rng.choice(n * rows * kh * kw, count, replace=False)
    sub = np.zeros((n, rows, kh, kw), np.float32)
    sub.flat[flat] = (layer.eps + rng.rand(count)) * rng.choice([-1, 1], count)
    p[:, :rows] = sub
    layer.lookup.set_data(mx.nd.array(p))
    layer.alive.set_data(mx.nd.array(p != 0, dtype="uint8"))


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("m,n,k,kernel,stride,pad,size", SPARSE_SHAPES)
def test_very_sparse_lookups_and_changing_content(lcnn_ops, m, n, k, kernel, stride, pad, size, batch):
    """Very sparse P (the operator then skips unused dictionary entries and S values), and new
    P contents with the same entry count through the same hybridized operator: its cached
    offsets and shortcuts must follow the content."""
    layer = lnn.LookupConv2D(n, kernel, stride, pad, dictionary_size=k, in_channels=m)
    layer.initialize()
    layer.bias.set_data(mx.nd.random.normal(shape=(n,)))
    x = mx.nd.random.normal(shape=(batch, m, size, size))
    count = max(3, layer.lookup.data().size // 200)
    op = None
    for seed, rows in enumerate([1, k, 2, k]):  # entries in 1 or 2 dictionary rows, or spread
        set_entries(layer, count, rows, seed)
        fresh = export.SparseLookup(layer, None, None, False)
        if op is None:
            op = fresh
            op.hybridize(static_alloc=True, static_shape=True)
        for name in ("indptr", "indices", "coefs"):
            getattr(op, name).set_data(getattr(fresh, name).data())
        ref = layer(x)
        np.testing.assert_allclose(op(x).asnumpy(), ref.asnumpy(), rtol=1e-4,
                                   atol=1e-5 * float(ref.abs().max().asscalar()), err_msg=f"rows {rows}")


def test_plans_outlive_the_states_mxnet_recreates(lcnn_ops):
    """Hybridized without static_shape, MXNet makes a new operator state on every call: the
    plan is built once per layer and content, and a state never takes a plan built for other
    attributes (here padding or ReLU, with the same input shape and P) or other content."""
    x = mx.nd.random.normal(shape=(2, 5, 13, 13))
    blocks = []
    for seed, pad, relu in [(0, 1, True), (0, 0, True), (0, 1, False), (1, 1, True)]:
        layer = lnn.LookupConv2D(8, 3, 1, pad, dictionary_size=4, in_channels=5)
        layer.initialize()
        lnn.set_random_lookup(layer, 0.3, seed=seed)
        layer.bias.set_data(mx.nd.random.normal(shape=(8,)))
        op = export.SparseLookup(layer, None, None, relu)
        op.hybridize()
        ref = layer(x)
        blocks.append((op, (mx.nd.relu(ref) if relu else ref).asnumpy()))
    op, ref = blocks[0]
    before = ops.plans_built()
    for _ in range(5):
        np.testing.assert_allclose(op(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)
    assert ops.plans_built() - before == 1
    for _ in range(3):  # interleaved: each state finds a plan of its own attributes or rebuilds
        for op, ref in blocks:
            np.testing.assert_allclose(op(x).asnumpy(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("stride,density,size,batch", [(1, 0.3, 11, 2), (2, 0.3, 11, 2), (1, 0.0, 11, 2),
                                                       (1, 0.3, 31, 1), (1, 0.0, 31, 1)])
def test_residual_added_before_relu(lcnn_ops, stride, density, size, batch):
    layer = lnn.LookupConv2D(6, 3, stride, 1, dictionary_size=3, in_channels=5)
    layer.initialize()
    lnn.set_random_lookup(layer, density)
    layer.bias.set_data(mx.nd.random.normal(shape=(6,)))
    x = mx.nd.random.normal(shape=(batch, 5, size, size))
    ref = layer(x)
    shortcut = mx.nd.random.normal(shape=ref.shape)
    op = export.SparseLookup(layer, None, None, False)
    op.add_residual()
    np.testing.assert_allclose(op(x, shortcut).asnumpy(), mx.nd.relu(ref + shortcut).asnumpy(),
                               rtol=1e-4, atol=1e-5)


def test_dense_layer_and_folded_batchnorm_with_relu(lcnn_ops):
    dense = lnn.LookupDense(10, dictionary_size=4, in_units=24)
    dense.initialize()
    lnn.set_random_lookup(dense, 0.5)
    x = mx.nd.random.normal(shape=(3, 24))
    np.testing.assert_allclose(export.SparseLookup(dense, None, None, False)(x).asnumpy(),
                               dense(x).asnumpy(), rtol=1e-4, atol=1e-5)
    conv = lnn.LookupConv2D(6, 3, 2, 1, dictionary_size=3, in_channels=4)
    conv.initialize()
    lnn.set_random_lookup(conv, 0.4)
    rng = np.random.RandomState(0)
    compare(conv, mx.nd.random.normal(shape=(2, 4, 9, 9)), scale=rng.rand(6) + 0.5,
            shift=rng.randn(6), relu=True)


def test_sparsify_folds_batchnorm_in_a_network(lcnn_ops):
    net = gluon.nn.HybridSequential()
    net.add(lnn.LookupConv2D(8, 3, padding=1, dictionary_size=3, in_channels=3, use_bias=False),
            gluon.nn.BatchNorm(), gluon.nn.Activation("relu"), gluon.nn.Dense(5))
    net.initialize()
    x = mx.nd.random.normal(shape=(2, 3, 8, 8))
    net(x)
    bn = net[1]
    bn.running_mean.set_data(mx.nd.random.normal(shape=(8,)))
    bn.running_var.set_data(mx.nd.random.uniform(0.5, 2, shape=(8,)))
    bn.gamma.set_data(mx.nd.random.uniform(0.5, 2, shape=(8,)))
    bn.beta.set_data(mx.nd.random.normal(shape=(8,)))
    sparse = export.sparsify(net)
    assert isinstance(sparse[0], export.SparseLookup) and sparse[0].attrs["act"] == "relu"
    assert not isinstance(net[0], export.SparseLookup)  # the training form is left alone
    np.testing.assert_allclose(sparse(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-5)


def op_inputs(**change):
    """Valid inputs for a 3x3 layer (m=4, k=2, n=3), with some replaced."""
    arrays = dict(data=mx.nd.ones((1, 4, 5, 5)), dictionary=mx.nd.ones((2, 4)),
                  indptr=mx.nd.array([0, 1, 1, 2], dtype="int32"),
                  indices=mx.nd.array([0, 17], dtype="int32"), coefs=mx.nd.array([1.0, 2.0]),
                  bias=mx.nd.zeros((3,)))
    arrays.update(change)
    return arrays


def run_op(attrs=None, **change):
    a = op_inputs(**change)
    kw = dict(dict(kernel=(3, 3), pad=(1, 1), num_filter=3), **(attrs or {}))
    extra = [a["residual"]] if "residual" in a else []
    return mx.nd.lcnn_lookup_conv(a["data"], a["dictionary"], a["indptr"], a["indices"], a["coefs"],
                                  a["bias"], *extra, **kw).asnumpy()


@pytest.mark.parametrize("change,attrs,message", [
    (dict(data=mx.nd.ones((4, 5, 5))), None, "data must be 4-D"),
    (dict(dictionary=mx.nd.ones((2, 3))), None, "m = data channels (4)"),
    (dict(indices=mx.nd.array([0, 18], dtype="int32")), None, "index 18 at entry 1 is outside"),
    (dict(indptr=mx.nd.array([0, -1, 1, 2], dtype="int32")), None, "indptr decreases"),
    (dict(indptr=mx.nd.array([0, 1, 1, 5], dtype="int32")), None, "end at len(indices) = 2"),
    (dict(data=mx.nd.ones((1, 4, 5, 5), dtype="float64")), None, "'data' must be float32"),
    (dict(indices=mx.nd.array([0, 1], dtype="float32")), None, "'indices' must be int32"),
    ({}, dict(dilate=(2, 2)), "unknown attribute 'dilate'"),
    ({}, dict(act="tanh"), "act must be 'none' or 'relu'"),
    ({}, dict(kernel=(9, 9)), "larger than the padded input"),
    (dict(residual=mx.nd.ones((1, 3, 4, 5))), dict(residual=1), "residual must have the output's shape"),
    (dict(residual=mx.nd.ones((1, 3, 5, 5))), dict(residual=1, pool_kernel=(2, 2)),
     "residual cannot be combined with pool_kernel"),
    ({}, dict(residual="yes"), "residual must be 0 or 1"),
    # sizes that overflowed 32-bit arithmetic: out of range, or planes too large for one image
    ({}, dict(stride=(2 ** 31 - 1, 1)), "kernel, stride and pool_stride must be in [1, 65536]"),
    ({}, dict(pad=(2 ** 31 - 100, 1)), "pad, pool_kernel and pool_pad must be in [0, 65536]"),
    ({}, dict(pad=(1, 2 ** 40)), "kernel/stride/pad must be 'K' or '(K1, K2)'"),
    ({}, dict(pad=(60000, 60000)), "needs planes of more than 2147483647 floats per image"),
    ({}, dict(num_filter=2 ** 31 - 1), "num_filter 2147483647 is above 16777216"),
    # a transposed dictionary: fully connected layers only, (m, k), on a 1x1 input
    ({}, dict(dictionary_layout="mk"), "'mk' is for fully connected layers only"),
    ({}, dict(dictionary_layout="MK"), "dictionary_layout must be 'km' or 'mk'"),
    (dict(data=mx.nd.ones((1, 4, 1, 1)), indices=mx.nd.array([0, 1], dtype="int32")),
     dict(kernel=(1, 1), pad=(0, 0), dictionary_layout="mk"), "dictionary must be (m, k), dictionary_layout 'mk'"),
    (dict(dictionary=mx.nd.ones((4, 2)), indices=mx.nd.array([0, 1], dtype="int32")),
     dict(kernel=(1, 1), pad=(0, 0), dictionary_layout="mk"), "'mk' needs an input of 1x1"),
])
def test_bad_input_is_an_error_not_a_crash(lcnn_ops, change, attrs, message):
    with pytest.raises(mx.base.MXNetError, match=re.escape(message)):
        run_op(attrs, **change)
    assert run_op().shape == (1, 3, 5, 5)  # the process and the operator still work


def test_each_error_stands_alone(lcnn_ops):
    """MXNet shows every message an extension library ever added; ours hands over one error's."""
    lengths = []
    for _ in range(50):
        with pytest.raises(mx.base.MXNetError) as caught:
            run_op(dict(act="tanh"))
        lengths.append(len(str(caught.value)))
        assert str(caught.value).count("act must be 'none' or 'relu'") == 1
    assert len(set(lengths)) == 1


def test_valid_call_matches_hand_computation(lcnn_ops):
    out = run_op()
    # channel 0: entry 0 = (d=0, r=0, c=0) coef 1: S[0] shifted by (-1, -1); S = 4 (sum of 4 ones)
    assert out[0, 0, 1, 1] == 4 and out[0, 0, 0, 0] == 0
    assert np.all(out[0, 1] == 0)  # no lookups: bias only
    # channel 2: entry 17 = (d=1, r=2, c=2) coef 2
    assert out[0, 2, 3, 3] == 8 and out[0, 2, 4, 4] == 0


POOLS = [  # (kernel, stride, pad, map size): every column path of the pooling (strides 1, 2, 4 and
    # others), several 8-wide blocks of the split row, windows that reach into the padding; for
    # windows 3 wide at stride 2 (taken apart in registers, 8 or 16 columns a register): maps whose
    # last register of columns is whole or cut short (3 to 55 columns), pooled rows shorter than a
    # register or ending in a part of one, padding of 0, 1 and 2 columns, windows of 1 and 2 rows,
    # and of 4 (the general pooling)
    ((3, 3), (2, 2), (0, 0), 13), ((3, 3), (2, 2), (1, 1), 13), ((2, 2), (2, 2), (0, 0), 13),
    ((3, 3), (2, 2), (0, 0), 3), ((3, 3), (2, 2), (1, 1), 6), ((3, 3), (2, 2), (0, 0), 16),
    ((3, 3), (2, 2), (1, 1), 15), ((3, 3), (2, 2), (0, 0), 27), ((3, 3), (2, 2), (0, 0), 35),
    ((3, 3), (2, 2), (1, 1), 36), ((3, 3), (2, 2), (0, 0), 55),
    ((3, 3), (2, 2), (0, 0), 17), ((3, 3), (2, 2), (1, 1), 18), ((3, 3), (2, 2), (1, 1), 45),
    ((1, 3), (1, 2), (0, 1), 40), ((2, 3), (2, 2), (1, 0), 35),
    ((3, 3), (1, 1), (1, 1), 21), ((5, 5), (3, 3), (2, 2), 40),
    ((4, 4), (4, 4), (1, 1), 70), ((2, 3), (1, 2), (1, 2), 19), ((3, 1), (2, 1), (1, 0), 12),
    ((4, 3), (2, 2), (1, 1), 20),
]


def check_fused_pooling(filters, density, x, kernel, stride, pad, relu):
    """The operator with a max pooling fused (and a ReLU before it if `relu`) against MXNet's
    pooling of the layer's output, for a random layer of `filters` channels on x (4 channels)."""
    layer = lnn.LookupConv2D(filters, 3, 1, 1, dictionary_size=3, in_channels=4)
    layer.initialize()
    lnn.set_random_lookup(layer, density)
    layer.bias.set_data(mx.nd.random.normal(shape=(filters,)) - 3)  # negative outputs: padding must not win
    y = layer(x)
    ref = mx.nd.Pooling(mx.nd.relu(y) if relu else y, kernel=kernel, stride=stride, pad=pad, pool_type="max")
    out = export.SparseLookup(layer, None, None, relu, gluon.nn.MaxPool2D(kernel, stride, pad))(x)
    np.testing.assert_allclose(out.asnumpy(), ref.asnumpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no act"])
@pytest.mark.parametrize("kernel,stride,pad,size", POOLS)
def test_fused_max_pooling_equals_mxnet_pooling(lcnn_ops, kernel, stride, pad, size, relu):
    check_fused_pooling(5, 0.4, mx.nd.random.normal(shape=(2, 4, size, size)), kernel, stride, pad, relu)


@pytest.mark.parametrize("relu", [True, False], ids=["relu", "no act"])
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("width,height,pooled_rows", [(64, 23, True), (75, 20, True), (40, 9, None)])
def test_pooling_in_registers_equals_mxnet_pooling(lcnn_ops, width, height, pooled_rows, pad, relu):
    """3x3 / stride-2 pooling over rows of 4+ registers is taken in registers (ResNet-18's conv1):
    rows of whole registers (64), a partial last one (75, an odd count on AVX-512), and 40
    columns (two rows at a time on AVX2; flat tiles on 16 lanes); windows cut by the last row."""
    before = ops.plans_built("pooled rows")
    x = mx.nd.random.normal(shape=(2, 4, height, width))
    check_fused_pooling(6, 0.2, x, (3, 3), (2, 2), (pad, pad), relu)
    if pooled_rows is not None:
        assert ops.plans_built("pooled rows") == before + int(pooled_rows), ops.kernel_isa()


def test_pool_pad_must_be_below_the_pool_kernel(lcnn_ops):
    with pytest.raises(mx.base.MXNetError, match="pool_pad in"):
        run_op(dict(pool_kernel=(2, 2), pool_pad=(2, 2)))
