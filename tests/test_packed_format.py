"""The packed format, one contract in two languages: the Python packer and the C++ operator name
the same fields, and for any layer the operator on the packed arrays equals the dense layer
W = P x D (property-based: hypothesis finds the edge cases; seeded, so CI is repeatable)."""
import re

import mxnet as mx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lcnn_gluon import ops
from lcnn_gluon.lookup import packed

SETTINGS = settings(max_examples=80, deadline=None, derandomize=True)


def test_python_and_cpp_name_the_same_fields():
    inputs, attributes = packed.header_names()
    assert inputs == packed.INPUTS and attributes == packed.ATTRIBUTES


@st.composite
def layers(draw, transposed=False):
    """A random lookup layer and input: shapes, density (0 = an all-zero layer), empty rows.
    ``transposed``: a fully connected layer with its dictionary transposed (wider: a register's
    lanes and more), on an input with zeros."""
    m, n, k = draw(st.integers(1, 6)), draw(st.integers(1, 7)), draw(st.integers(1, 5))
    if transposed:
        m, k = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    kh, kw = (1, 1) if transposed else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    fc = transposed or draw(st.booleans())  # a kernel covering the whole input (fully connected layers)
    sh, sw = (1, 1) if fc else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    ph, pw = (0, 0) if fc else (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = kh if fc else draw(st.integers(max(1, kh - 2 * ph), kh + 9))
    w = kw if fc else draw(st.integers(max(1, kw - 2 * pw), kw + 9))
    # (hypothesis draws the first choices most: for a transposed dictionary, batch 1 with entries)
    batch = draw(st.sampled_from([1, 2, 0] if transposed else [0, 1, 2]))
    density = draw(st.sampled_from([0.3, 1.0, 0.05, 0.0] if transposed else [0.0, 0.05, 0.3, 1.0]))
    seed = draw(st.integers(0, 2 ** 16))
    rng = np.random.RandomState(seed)
    p = rng.standard_normal((n, k, kh, kw)).astype(np.float32) * (rng.random_sample((n, k, kh, kw)) < density)
    if n > 1 and draw(st.booleans()):
        p[rng.randint(n)] = 0  # an output channel without entries
    x = rng.standard_normal((batch, m, h, w)).astype(np.float32)
    if transposed:
        x *= rng.random_sample(x.shape) < draw(st.sampled_from([0.5, 1.0, 0.0]))  # inputs kept
    return dict(p=p, d=rng.standard_normal((k, m)).astype(np.float32),
                bias=rng.standard_normal(n).astype(np.float32), x=x,
                kernel=(kh, kw), stride=(sh, sw), pad=(ph, pw), dictionary_layout="mk" if transposed else "km")


def run_packed(layer, layout):
    arrays = layout.arrays(layer["dictionary_layout"])
    return mx.nd.lcnn_lookup_conv(mx.nd.array(layer["x"]), *(mx.nd.array(arrays[name], dtype=arrays[name].dtype)
                                                             for name in packed.PACKED),
                                  kernel=layer["kernel"], stride=layer["stride"], pad=layer["pad"],
                                  num_filter=layer["p"].shape[0],
                                  dictionary_layout=layer["dictionary_layout"])


@SETTINGS
@given(st.one_of(layers(), layers(transposed=True)))
def test_operator_equals_the_dense_layer(lcnn_ops, layer):
    layout = packed.PackedLookup.pack(layer["p"], layer["d"], layer["bias"])
    np.testing.assert_array_equal(layout.lookup(), layer["p"])  # the packing loses nothing
    with mx.np_shape(True):  # MXNet 1.x can express a batch of 0 only with NumPy shape semantics
        out = run_packed(layer, layout).asnumpy()
    (n, _, kh, kw), (batch, _, h, w) = layer["p"].shape, layer["x"].shape
    (sh, sw), (ph, pw) = layer["stride"], layer["pad"]
    assert out.shape == (batch, n, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
    if batch:  # the dense layer (MXNet's own convolution refuses a batch of 0)
        weight = np.einsum("nkrc,km->nmrc", layer["p"], layer["d"])
        ref = mx.nd.Convolution(mx.nd.array(layer["x"]), mx.nd.array(weight), mx.nd.array(layer["bias"]),
                                kernel=layer["kernel"], stride=layer["stride"], pad=layer["pad"],
                                num_filter=n).asnumpy()
        assert np.abs(out - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


CORRUPTIONS = {
    "index past k*kh*kw": (lambda a, limit: a["indices"].__setitem__(0, limit), r"is outside \[0, k\*kh\*kw"),
    "negative index": (lambda a, limit: a["indices"].__setitem__(-1, -3), r"is outside \[0, k\*kh\*kw"),
    "decreasing row pointers": (lambda a, limit: a["indptr"].__setitem__(1, a["indptr"][2] + 1),
                                "indptr (decreases|must start)"),
    "row pointers past the end": (lambda a, limit: a["indptr"].__setitem__(-1, a["indptr"][-1] + 5),
                                  "end at len\\(indices\\)"),
}


@SETTINGS
@given(st.one_of(layers(), layers(transposed=True)), st.sampled_from(sorted(CORRUPTIONS)))
def test_malformed_packed_input_is_an_error(lcnn_ops, layer, corruption):
    layer["p"][0, 0, 0, 0] = 1.0  # at least one entry
    if layer["x"].shape[0] == 0:
        layer["x"] = np.ones((1,) + layer["x"].shape[1:], np.float32)
    layout = packed.PackedLookup.pack(layer["p"], layer["d"], layer["bias"])
    if corruption == "decreasing row pointers" and len(layout.indptr) < 3:
        return
    damage, message = CORRUPTIONS[corruption]
    damage(layout.arrays(), layout.dictionary.shape[0] * layout.kernel[0] * layout.kernel[1])
    with pytest.raises(mx.base.MXNetError, match=re.compile(message)):
        run_packed(layer, layout).wait_to_read()


def test_wrong_lengths_are_errors(lcnn_ops):
    rng = np.random.RandomState(0)
    layer = dict(p=rng.standard_normal((3, 2, 3, 3)).astype(np.float32), d=np.ones((2, 4), np.float32),
                 bias=np.zeros(3, np.float32), x=np.ones((1, 4, 6, 6), np.float32), kernel=(3, 3),
                 stride=(1, 1), pad=(1, 1), dictionary_layout="km")
    layout = packed.PackedLookup.pack(layer["p"], layer["d"], layer["bias"])
    for field, value, message in (("coefs", layout.coefs[:-1], "indices and coefs must be 1-D of the same length"),
                                  ("indptr", layout.indptr[:-1], "indptr must have num_filter \\+ 1"),
                                  ("bias", layout.bias[:2], "bias must have num_filter")):
        broken = packed.PackedLookup(**{**layout.__dict__, field: value})
        with pytest.raises(mx.base.MXNetError, match=message):
            run_packed(layer, broken).wait_to_read()
    assert run_packed(layer, layout).shape == (1, 3, 6, 6)  # the process and the operator still work


@pytest.mark.parametrize("stride,size,biased", [((2, 2), 9, False), ((2, 2), 13, True), ((3, 2), 11, False),
                                                ((1, 1), 6, False)])
def test_identity_lookups_with_coefficients_in_the_dictionary(lcnn_ops, stride, size, biased):
    """P = diag(c) packed as is and with c moved into D give the dense layer: on the operator the
    second takes the product as the output where the bias is 0 (Plan::identity_lookups)."""
    rng = np.random.RandomState(size)
    n, m = 5, 6  # (inputs of at most 4 channels take another product: kRowProductMaxChannels)
    p = np.diag(rng.uniform(0.5, 2, n)).astype(np.float32).reshape(n, n, 1, 1)
    layer = dict(p=p, d=rng.standard_normal((n, m)).astype(np.float32),
                 bias=(rng.standard_normal(n) if biased else np.zeros(n)).astype(np.float32),
                 x=rng.standard_normal((2, m, size, size)).astype(np.float32), kernel=(1, 1), stride=stride,
                 pad=(0, 0), dictionary_layout="km")
    layout = packed.PackedLookup.pack(layer["p"], layer["d"], layer["bias"])
    folded = layout.identity_into_dictionary()
    assert (folded.coefs == 1).all()
    weight = np.einsum("nkrc,km->nmrc", p, layer["d"])
    ref = mx.nd.Convolution(mx.nd.array(layer["x"]), mx.nd.array(weight), mx.nd.array(layer["bias"]), kernel=(1, 1),
                            stride=stride, num_filter=n).asnumpy()
    built = ops.plans_built("identity lookups")
    for form in (layout, folded):
        assert np.abs(run_packed(layer, form).asnumpy() - ref).max() <= 1e-4 * np.abs(ref).max()
    # one plan (the same packed content), of identity lookups where the layer is strided
    assert ops.plans_built("identity lookups") - built == (stride != (1, 1))
    p[0, 1] = 1.0  # no longer the identity
    with pytest.raises(ValueError, match="not the identity"):
        packed.PackedLookup.pack(p, layer["d"]).identity_into_dictionary()
