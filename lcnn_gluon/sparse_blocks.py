"""The blocks of LCNN's inference form, which :func:`lcnn_gluon.export.sparsify` builds.

:class:`SparseLookup` is a lookup layer on the C++ operator ``lcnn_lookup_conv`` with its
live P packed (:class:`lcnn_gluon.lookup.PackedLookup`), absorbing what follows it
(:func:`fusion`: a BatchNorm folded into its coefficients and bias, a ReLU, a max-pooling);
:class:`SparseResidualBlock` lets the last lookup layer of a residual block add the shortcut;
:func:`dense_layer` is a lookup layer as a plain layer of weight ``W = P x D`` (for an export,
:func:`dense_layer_for`, with the BatchNorm and ReLU after it folded in).
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn
from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1

from .lookup.layers import LookupConv2D, LookupDense, _Lookup
from .lookup.packed import PackedLookup


class SparseLookup(HybridBlock):
    """A lookup layer in inference form: the ``lcnn_lookup_conv`` operator on CSR lookups.

    Input and output as the lookup layer it replaces (a dense layer's input is
    flattened and treated as a 1x1 map). ``layer`` may also be a plain ``nn.Dense`` or
    1x1 ``nn.Conv2D``: it runs as the lookup layer ``D = diag(scale) W``, ``P = I`` (one
    coefficient 1 per output; see :func:`plain_on_operator`); ``identity`` says so.
    """

    def __init__(self, layer: Union[_Lookup, nn.Dense, nn.Conv2D], scale: Optional[np.ndarray],
                 shift: Optional[np.ndarray], relu: bool, pool: Optional[nn.MaxPool2D] = None,
                 flatten: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.residual = False  # see add_residual
        plain = isinstance(layer, (nn.Dense, nn.Conv2D))
        self.identity = plain
        self.dense = isinstance(layer, (nn.Dense, LookupDense))
        self.flatten = self.dense or flatten  # the output as (N, features)
        if self.dense:
            kernel, stride, pad = (1, 1), (1, 1), (0, 0)
        elif plain:
            kernel, stride, pad = layer._kwargs["kernel"], layer._kwargs["stride"], layer._kwargs["pad"]
        else:
            kernel, stride, pad = layer.kernel, layer.strides, layer.padding
        self.attrs = dict(kernel=kernel, stride=stride, pad=pad, num_filter=_channels(layer),
                          act="relu" if relu else "none")
        if self.dense:  # D transposed: at batch 1 only the rows of non-zero inputs are read
            self.attrs.update(dictionary_layout="mk")
        if pool is not None:
            self.attrs.update(pool_kernel=pool._kwargs["kernel"], pool_stride=pool._kwargs["stride"],
                              pool_pad=pool._kwargs["pad"])
        if plain:
            weight = layer.weight.data().asnumpy()
            dictionary = weight.reshape(weight.shape[0], -1)
            lookup = np.eye(dictionary.shape[0], dtype=np.float32)
        else:
            lookup, dictionary = layer.effective_lookup().asnumpy(), layer.dictionary.data().asnumpy()
        packed = PackedLookup.pack(lookup, dictionary, layer.bias.data().asnumpy() if layer.bias is not None
                                   else None, scale, shift)
        if plain:
            packed = packed.identity_into_dictionary()
        with self.name_scope():
            for name, value in packed.arrays(self.attrs.get("dictionary_layout", "km")).items():
                param = self.params.get(name, shape=value.shape, dtype=value.dtype, grad_req="null",
                                        differentiable=False)
                param.initialize(init=mx.init.Constant(0))
                param.set_data(mx.nd.array(value, dtype=value.dtype))
                setattr(self, name, param)
        self.density = packed.density

    def add_residual(self) -> None:
        """From now on take a second input, the shortcut, added before the ReLU:
        ``relu(layer(x) + shortcut)`` (the end of a ResNet basic block)."""
        if self.flatten or "pool_kernel" in self.attrs or self.attrs["act"] != "none":
            raise ValueError(f"{self.name}: a residual needs a convolution without act or pooling")
        self.residual = True
        self.attrs.update(act="relu", residual=1)

    def hybrid_forward(self, F, x, *shortcut, dictionary, indptr, indices, coefs, bias):
        if self.dense:
            x = F.reshape(x, shape=(0, -1, 1, 1))
        y = F.lcnn_lookup_conv(x, dictionary, indptr, indices, coefs, bias, *shortcut, **self.attrs)
        return F.flatten(y) if self.flatten else y


class SparseResidualBlock(HybridBlock):
    """``relu(body(x) + shortcut(x))`` with the body's last lookup layer adding the shortcut
    and applying the ReLU itself (no separate elementwise passes over the block's output)."""

    def __init__(self, body: list, tail: SparseLookup, downsample: Optional[HybridBlock], **kwargs):
        super().__init__(**kwargs)
        tail.add_residual()
        shortcut = _plain_shortcut(downsample)
        if shortcut is not None:  # its bias added by the tail instead: its product is its output
            tail.bias.set_data(tail.bias.data() + shortcut.bias.data())
            shortcut.bias.set_data(mx.nd.zeros_like(shortcut.bias.data()))
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(*body)
            self.tail, self.downsample = tail, downsample

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.tail(self.body(x), shortcut)


def _plain_shortcut(downsample: Optional[HybridBlock]) -> Optional[SparseLookup]:
    """The shortcut's only block when it is a plain layer on the operator (``P = I``) with
    nothing after it on the operator (no act, pooling or flattening), else None."""
    blocks = list(downsample._children.values()) if isinstance(downsample, nn.HybridSequential) else [downsample]
    one = blocks[0] if len(blocks) == 1 else None
    if (isinstance(one, SparseLookup) and one.identity and not one.flatten and one.attrs["act"] == "none"
            and "pool_kernel" not in one.attrs):
        return one
    return None


def residual_parts(block: HybridBlock) -> Optional[Tuple[nn.HybridSequential, Optional[HybridBlock]]]:
    """``(body, shortcut)`` of a block that computes ``relu(body(x) + shortcut(x))`` (``shortcut``
    None: the identity), or None for any other block.

    The protocol: such a block declares itself with a method ``lcnn_residual()`` returning its
    sequential ``body`` and its ``shortcut`` block (docs/design.md); Gluon's ``BasicBlockV1``
    is declared here on its behalf. Export then lets the body's last lookup layer add the
    shortcut and apply the ReLU.
    """
    declared = getattr(block, "lcnn_residual", None)
    if callable(declared):
        return declared()
    if isinstance(block, BasicBlockV1):
        return block.body, block.downsample
    return None


def fold_batchnorm(bn: nn.BatchNorm) -> Tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with ``bn(y) = y * scale + shift`` at inference."""
    gamma = (np.ones(bn.gamma.shape, np.float32) if bn._kwargs.get("fix_gamma")
             else bn.gamma.data().asnumpy())
    scale = gamma / np.sqrt(bn.running_var.data().asnumpy() + bn._kwargs["eps"])
    return scale, bn.beta.data().asnumpy() - bn.running_mean.data().asnumpy() * scale


@dataclasses.dataclass
class Fusion:
    """What the operator absorbs of the blocks right after a lookup layer, in this order:
    the layer's own activation or a BatchNorm (folded into coefficients and bias), a ReLU,
    a max-pooling. ``absorbed`` counts the following blocks taken."""

    bn: Optional[nn.BatchNorm] = None
    relu: bool = False
    pool: Optional[nn.MaxPool2D] = None
    absorbed: int = 0


def _is_channel_batchnorm(block: HybridBlock, channels: int) -> bool:
    return (isinstance(block, nn.BatchNorm) and block._kwargs.get("axis", 1) == 1
            and block.gamma.shape[0] == channels)


def _is_relu(block: HybridBlock) -> bool:
    return isinstance(block, nn.Activation) and block._act_type == "relu"


def _activation(layer: HybridBlock) -> Optional[str]:
    """The activation a lookup layer or a plain ``Dense``/``Conv2D`` applies itself."""
    if isinstance(layer, _Lookup):
        return layer.activation
    return layer.act._act_type if layer.act is not None else None


def _channels(layer: HybridBlock) -> int:
    """Output channels (features) of a lookup layer or a plain ``Dense``/``Conv2D``."""
    if isinstance(layer, _Lookup):
        return layer.channels
    return layer._units if isinstance(layer, nn.Dense) else layer._channels


def _is_fusable_pool(block: HybridBlock, layer: HybridBlock) -> bool:
    kw = block._kwargs if isinstance(block, nn.MaxPool2D) else {}
    return (bool(kw) and kw.get("pooling_convention") == "valid" and not kw.get("global_pool")
            and kw.get("layout", "NCHW") in (None, "NCHW") and not isinstance(layer, (LookupDense, nn.Dense)))


def fusion(layer: HybridBlock, following: list) -> Fusion:
    """What of ``following`` (the blocks after ``layer`` in a sequential container) the
    operator computes exactly: y = pool(relu(bn(layer(x)))) with each part optional.

    A BatchNorm is folded only when nothing non-linear comes before it: not after the
    layer's own activation (``Conv2D(..., activation='relu')`` then BatchNorm keeps its
    BatchNorm). A layer activation other than ReLU absorbs nothing (it runs after the
    operator as its own block). Max-pooling commutes with nothing here: it is fused only
    where it comes last.
    """
    activation = _activation(layer)
    if activation not in (None, "relu"):
        return Fusion()
    rest, found = list(following), Fusion(relu=activation == "relu")
    if not found.relu and rest and _is_channel_batchnorm(rest[0], _channels(layer)):
        found.bn = rest.pop(0)
        found.relu = bool(getattr(found.bn, "fuse_relu", False))
    if not found.relu and rest and _is_relu(rest[0]):
        found.relu = bool(rest.pop(0))
    if rest and _is_fusable_pool(rest[0], layer):
        found.pool = rest.pop(0)
    found.absorbed = len(following) - len(rest)
    return found


def dense_layer(layer: _Lookup, scale: Optional[np.ndarray] = None, shift: Optional[np.ndarray] = None,
                relu: bool = False) -> HybridBlock:
    """A plain ``Conv2D`` / ``Dense`` layer computing ``layer`` with weight ``W = P x D``; with
    ``scale`` and ``shift`` (n,), a BatchNorm after it folded in (``W' = scale W``, ``b' = scale
    b + shift``), and with ``relu`` a ReLU after that as the layer's activation."""
    w = layer.dense_weight().asnumpy()
    bias = layer.bias.data().asnumpy() if layer.bias is not None else None
    if scale is not None:
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        bias = (bias if bias is not None else 0.0) * scale + shift
    kw = dict(activation="relu" if relu else layer.activation, use_bias=bias is not None, prefix=layer.prefix)
    if isinstance(layer, LookupConv2D):
        dense = nn.Conv2D(layer.channels, layer.kernel, layer.strides, layer.padding,
                          in_channels=w.shape[1], **kw)
    else:
        dense = nn.Dense(layer.channels, in_units=w.shape[1], **kw)
    dense.initialize()
    dense.weight.set_data(mx.nd.array(w))
    if bias is not None:
        dense.bias.set_data(mx.nd.array(bias))
    return dense


def dense_layer_for(layer: _Lookup, following: list) -> Tuple[HybridBlock, int]:
    """``(block, absorbed)``: ``layer`` as :func:`dense_layer` for an export, with the BatchNorm
    and the ReLU right after it folded in as :func:`sparse_lookup_for` folds them (a max-pooling
    stays MXNet's), and how many of ``following`` it took: the export then has one form for every
    layer, BatchNorm folded. (Speed, ResNet-18-accurate's three stride-2 layers, which run dense,
    in lcnn-predict, alternating processes, medians of 6-8 rounds: within the noise, 1.006-1.068
    at one thread, batch 1, 0.98-0.99 at two threads or batch 16; oneDNN's BatchNorm on its own
    layout is a cheap pass.)"""
    found = fusion(layer, following)
    if found.bn is None and not (found.relu and layer.activation is None):
        return dense_layer(layer), 0
    scale, shift = fold_batchnorm(found.bn) if found.bn is not None else (None, None)
    return dense_layer(layer, scale, shift, found.relu), found.absorbed - (found.pool is not None)


def plain_on_operator(layer: HybridBlock, following: list) -> Optional[Tuple[SparseLookup, int]]:
    """``(block, absorbed)``: a plain layer on the operator as ``D = W``, ``P = I``, taking
    what it can of ``following`` as a lookup layer does (:func:`fusion`); None for a layer
    it does not take.

    It takes a flattening ``nn.Dense`` (the classifier) and a 1x1 ``nn.Conv2D`` of any
    stride without padding, groups or dilation (a ResNet shortcut), with no activation or a
    ReLU. Why: MXNet 1.9's ``FullyConnected`` runs oneDNN's gemm, which at AVX-512 takes
    twice as long at two threads as at one for AlexNet's 4096 -> 1000 classifier at batch
    16, where the operator takes half its one-thread time; oneDNN's 1x1 convolution with
    its BatchNorm on the plain layout the operator's outputs have is slower than the operator
    on large maps (:func:`lcnn_gluon.export.sparsify` picks which; figures in
    benchmarks/RESULTS.md, runs 27 and 28).
    """
    if isinstance(layer, nn.Dense):
        if not layer._flatten:
            return None
    elif isinstance(layer, nn.Conv2D):
        kw = layer._kwargs
        if (kw["kernel"] != (1, 1) or kw["pad"] != (0, 0) or kw["dilate"] != (1, 1) or kw["num_group"] != 1
                or kw.get("layout", "NCHW") != "NCHW"):
            return None
    else:
        return None
    if layer.weight._data is None or _activation(layer) not in (None, "relu"):
        return None
    found = fusion(layer, following)
    scale, shift = fold_batchnorm(found.bn) if found.bn is not None else (None, None)
    return SparseLookup(layer, scale, shift, found.relu, found.pool, prefix=layer.prefix), found.absorbed


def sparse_lookup_for(layer: _Lookup, following: list) -> Tuple[HybridBlock, int]:
    """``(block, absorbed)``: ``layer`` as a :class:`SparseLookup` taking what it can of
    ``following`` (:func:`fusion`), and how many of those blocks it took. A layer activation
    the operator cannot apply runs as its own block after it."""
    found = fusion(layer, following)
    scale, shift = fold_batchnorm(found.bn) if found.bn is not None else (None, None)
    new = SparseLookup(layer, scale, shift, found.relu, found.pool,
                       flatten=getattr(found.bn, "flattens", False), prefix=layer.prefix)
    if layer.activation not in (None, "relu"):
        seq = nn.HybridSequential(prefix="")
        seq.add(new, nn.Activation(layer.activation))
        new = seq
    return new, found.absorbed

