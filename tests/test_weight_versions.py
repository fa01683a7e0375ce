"""The operator's states compare the packed content (indptr, indices, coefs) with their plan's
copy, and make the dictionary's transposed rows or strips again, only when MXNet's version of an
array changed (operators/lookup_conv.cc, PackedArraysOf, DictionaryCopy): every way a user
writes those arrays from Python must change the output, on MXNet's threaded engine and on its
naive one, for a layer alone and for a layer inside a chain."""
import json
import textwrap

import pytest
from conftest import DEFAULT_KERNEL_SET, PY, run

SCRIPT = textwrap.dedent("""
    import json, os, sys, tempfile
    import mxnet as mx
    import numpy as np
    from lcnn_gluon import export, ops
    from lcnn_gluon import nn as lnn
    sys.path.insert(0, "tests")
    from chained_exports import chained_and_plain
    ops.load()
    errors = {}

    def check(what, got, want):
        errors[what] = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-6))

    # one layer whose plan reads the coefficients in an order of its own (row blocks)
    layer = lnn.LookupConv2D(12, 3, 1, 1, dictionary_size=64, in_channels=8)
    layer.initialize()
    lnn.set_random_lookup(layer, 0.3, seed=5)
    x = mx.nd.random.normal(shape=(1, 8, 40, 40))
    op = export.SparseLookup(layer, None, None, False)
    op.hybridize(static_alloc=True, static_shape=True)
    coefs, indices = op.coefs.data(), op.indices.data()
    c0, i0 = coefs.asnumpy(), indices.asnumpy()

    def dense(c, i):  # the dense layer of packed content (c, i), through a fresh operator state
        fresh = export.SparseLookup(layer, None, None, False)
        fresh.coefs.set_data(mx.nd.array(c))
        fresh.indices.set_data(mx.nd.array(i, dtype="int32"))
        return fresh(x).asnumpy()

    op(x).wait_to_read()
    coefs[:] = c0 * 2.0  # a numpy array (MXNDArraySyncCopyFromCPU)
    check("coefs[:] = numpy", op(x).asnumpy(), dense(c0 * 2.0, i0))
    coefs[:] = 0.5  # a scalar
    check("coefs[:] = scalar", op(x).asnumpy(), dense(np.full_like(c0, 0.5), i0))
    coefs[:] = c0
    coefs *= -1.5  # in place
    check("coefs *= scalar", op(x).asnumpy(), dense(c0 * -1.5, i0))
    mx.nd.elemwise_add(coefs, coefs, out=coefs)  # an operator's out=
    check("out=coefs", op(x).asnumpy(), dense(c0 * -3.0, i0))
    op.coefs.set_data(mx.nd.array(c0))
    check("set_data", op(x).asnumpy(), dense(c0, i0))
    shifted = (i0 + 9) % (64 * 9)  # other dictionary vectors: a new plan
    indices[:] = shifted
    check("indices[:] = numpy", op(x).asnumpy(), dense(c0, shifted))
    path = os.path.join(tempfile.mkdtemp(), "op.params")
    op.save_parameters(path)
    indices[:] = i0
    coefs[:] = c0 * 4.0
    op(x).wait_to_read()
    op.load_parameters(path)  # back to (c0, shifted)
    check("load_parameters", op(x).asnumpy(), dense(c0, shifted))

    def dictionary_writes(layer, x, name):  # the dictionary written two ways: against a fresh state
        top = export.SparseLookup(layer, None, None, False)
        top.hybridize(static_alloc=True, static_shape=True)
        top(x).wait_to_read()
        d0 = top.dictionary.data().asnumpy()
        for how, d in (("[:] = numpy", d0 * -2.0), ("set_data", d0 + 0.25)):
            if how.endswith("numpy"):
                top.dictionary.data()[:] = d
            else:
                top.dictionary.set_data(mx.nd.array(d))
            fresh = export.SparseLookup(layer, None, None, False)
            fresh.dictionary.set_data(mx.nd.array(d))
            check(f"{name} {how}", top(x).asnumpy(), fresh(x).asnumpy())

    # a layer taking the dictionary product transposed, which keeps D's rows transposed
    small = lnn.LookupConv2D(10, 3, 1, 1, dictionary_size=80, in_channels=24)
    small.initialize()
    lnn.set_random_lookup(small, 0.3, seed=6)
    built = ops.plans_built("transposed product")
    dictionary_writes(small, mx.nd.random.normal(shape=(1, 24, 14, 14)), "dictionary")
    transposed = ops.plans_built("transposed product") - built
    # a fully connected layer over a batch, which keeps its dictionary (D') strip by strip on
    # the kernel sets whose product takes the images as one panel
    fc = lnn.LookupDense(40, dictionary_size=24, in_units=300)
    fc.initialize()
    lnn.set_random_lookup(fc, 0.3, seed=7)
    dictionary_writes(fc, mx.nd.random.normal(shape=(4, 300)), "fc dictionary")

    # a layer inside a chain (its grouped layers run batches in groups of images)
    shape = (3, 64, 64)
    chained, plain, meta = chained_and_plain(shape)
    x = mx.nd.random.normal(shape=(2,) + shape)
    chained(x).wait_to_read()
    for block in (chained, plain):
        coef = next(p for name, p in block.collect_params().items()
                    if name.endswith("basicblock0_lookupconv2d0_coefs"))
        coef.data()[:] = coef.data().asnumpy() * 1.5
    check("chain: coefs[:] = numpy", chained(x).asnumpy(), plain(x).asnumpy())
    print(json.dumps(dict(errors=errors, chains=meta["lookup_chains"], transposed=transposed > 0,
                     kernels=ops.kernel_isa())))
""")


# (the default kernels, and avx2pair, which has the transposed product on any AVX2 host)
@pytest.mark.parametrize("engine,isa", [("ThreadedEnginePerDevice", DEFAULT_KERNEL_SET), ("NaiveEngine", "avx2pair")])
def test_every_write_to_the_packed_arrays_is_seen(lcnn_ops, engine, isa):
    out = run(PY, "-c", SCRIPT, env={"MXNET_ENGINE_TYPE": engine, "OMP_NUM_THREADS": "2", "LCNN_ISA": isa}).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kernels"] == isa and result["chains"] >= 1
    assert result["transposed"] == (isa != "avx2"), result["transposed"]
    assert len(result["errors"]) == 12
    for what, error in result["errors"].items():
        assert error < 1e-4, (engine, what, error)
