"""Lookup layers: a dictionary and a sparse lookup tensor in place of a weight.

A lookup layer with ``n`` outputs, ``m`` inputs, kernel ``kh x kw`` and dictionary size
``k`` holds

* ``dictionary`` D, ``(k, m, 1, 1)`` (``(k, m)`` for :class:`LookupDense`),
* ``lookup`` P, ``(n, k, kh, kw)`` (``(n, k)``), kept sparse by :mod:`.rule`,
* ``alive``, P's shape, one byte per entry: 1 where an entry may still be non-zero
  (saved with the parameters, never trained),
* ``bias``, ``(n,)``.

It computes ``conv(X, W)`` with ``W = P_live x D`` (:func:`compose`), either as one dense
convolution ("composed") or as ``conv(conv1x1(X, D), P_live)`` ("two_stage"), whichever
:func:`lcnn_gluon.flops.choose_forms` found cheaper; both give the same numbers. A
convolution whose kernel covers its whole unpadded input (AlexNet's fc6,
:func:`is_fully_connected`) runs as a fully connected layer on the flattened map.
"""
from __future__ import annotations

import weakref
from typing import List, Optional, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from .. import tree
from . import rule

IntPair = Union[int, Tuple[int, int]]
FORMS = ("composed", "two_stage")


def _pair(v: IntPair) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def compose(F, lookup, dictionary, ndim: int = 4):
    """``W = einsum('nkrc,km->nmrc', P, D)``: ``(n, m, kh, kw)`` from P ``(n, k, kh, kw)`` and D
    ``(k, m[, 1, 1])``; with ``ndim=2``, ``(n, m)`` from P ``(n, k)`` (``F``: ``mx.nd`` or
    ``mx.sym``; symbols do not know their rank, so it is given)."""
    d = F.reshape(dictionary, shape=(0, -1))  # (k, m)
    if ndim == 2:
        return F.dot(lookup, d)
    return F.transpose(F.dot(F.transpose(lookup, axes=(0, 2, 3, 1)), d), axes=(0, 3, 1, 2))


def is_fully_connected(layer: "_Lookup", in_shape: Tuple[int, ...]) -> bool:
    """Whether ``layer`` on one input of ``in_shape`` (C, H, W) is a fully connected layer:
    a :class:`LookupDense`, or a convolution whose kernel covers the unpadded input."""
    if isinstance(layer, LookupDense):
        return True
    return tuple(in_shape[1:]) == layer.kernel and layer.padding == (0, 0)


class _Lookup(HybridBlock):
    """Parameters, threshold and bookkeeping shared by the convolution and dense forms."""

    def __init__(self, channels: int, kernel: Tuple[int, int], dictionary_size: int, lambda_: float,
                 initial_sparsity: float, use_bias: bool, in_channels: int, d_shape: tuple,
                 p_shape: tuple, activation: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        if dictionary_size < 1 or channels < 1:
            raise ValueError(f"dictionary_size {dictionary_size} and channels {channels} must be >= 1")
        self.channels, self.kernel, self.dictionary_size = channels, kernel, dictionary_size
        self.in_channels, self.lambda_, self.initial_sparsity = in_channels, lambda_, initial_sparsity
        self.eps = rule.threshold(initial_sparsity, kernel, dictionary_size)
        self.form = "composed"
        # P uniform in +-1/sqrt(k*kh*kw) (so about a fraction `initial_sparsity` starts
        # below eps); D uniform in +-sqrt(18/m), so that W = P x D has He-init variance
        # 2/(m*kh*kw) and networks without BatchNorm train too
        p_init = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=1.0)
        d_init = mx.init.Xavier(rnd_type="uniform", factor_type="in", magnitude=18.0)
        with self.name_scope():
            self.dictionary = self.params.get("dictionary", shape=d_shape, init=d_init,
                                              allow_deferred_init=True)
            self.lookup = self.params.get("lookup", shape=p_shape, init=p_init)
            self.alive = self.params.get("alive", shape=p_shape, init="ones", grad_req="null",
                                         differentiable=False, dtype=rule.ALIVE_DTYPE)
            self.bias = (self.params.get("bias", shape=(channels,), init="zeros")
                         if use_bias else None)
        self.lookup.lookup_layer = weakref.ref(self)  # for LookupSGD, which sees parameters only

    # ---- the sparse lookup tensor, outside the graph (packing, counting, tests)
    def effective_lookup(self, ctx: Optional[mx.Context] = None) -> mx.nd.NDArray:
        """P with pruned and below-threshold entries zeroed, P's shape."""
        return rule.effective(self.lookup.data(ctx), self.alive.data(ctx), self.eps)

    def density(self) -> float:
        """Fraction of P's entries that are non-zero in the forward pass."""
        return float((self.effective_lookup() != 0).mean().asscalar())

    def dense_weight(self) -> mx.nd.NDArray:
        """The equivalent dense weight ``W = P_live x D``: ``(n, m, kh, kw)``, or ``(n, m)`` for
        :class:`LookupDense`."""
        p = self.effective_lookup()
        return compose(mx.nd, p, self.dictionary.data(), p.ndim)

    def _masked(self, F, lookup, alive):
        return rule.masked(F, lookup, alive, self.eps, rule.kernels(self.lookup.list_ctx()))

    def _act(self, F, y):
        return F.Activation(y, act_type=self.activation) if self.activation else y

    def _set_form(self, form: str) -> None:
        if form not in FORMS:
            raise ValueError(f"form {form!r}: must be one of {FORMS}")
        self.form = form


class LookupConv2D(_Lookup):
    """A 2-D convolution (NCHW) whose weight is a sparse combination of dictionary vectors.

    Input ``(B, m, H, W)``, output ``(B, channels, H', W')`` as ``nn.Conv2D`` with
    the same kernel, strides and padding. ``in_channels=0`` defers ``m`` to the
    first forward pass.
    """

    def __init__(self, channels: int, kernel_size: IntPair, strides: IntPair = 1,
                 padding: IntPair = 0, dictionary_size: int = 16, lambda_: float = 0.0,
                 initial_sparsity: float = 0.01, use_bias: bool = True, in_channels: int = 0,
                 activation: Optional[str] = None, **kwargs):
        kernel = _pair(kernel_size)
        self.strides, self.padding = _pair(strides), _pair(padding)
        self.as_fc = False  # set by flops.choose_forms (is_fully_connected on the traced input)
        super().__init__(channels, kernel, dictionary_size, lambda_, initial_sparsity, use_bias,
                         in_channels, d_shape=(dictionary_size, in_channels, 1, 1),
                         p_shape=(channels, dictionary_size) + kernel, activation=activation, **kwargs)

    def hybrid_forward(self, F, x, dictionary, lookup, alive, bias=None):
        p = self._masked(F, lookup, alive)
        if self.as_fc:
            return self._as_fully_connected(F, x, dictionary, p, bias)
        conv = dict(kernel=self.kernel, stride=self.strides, pad=self.padding,
                    num_filter=self.channels, no_bias=bias is None)
        if self.form == "two_stage":
            s = F.Convolution(x, dictionary, kernel=(1, 1), num_filter=self.dictionary_size,
                              no_bias=True)
            y = F.Convolution(s, p, bias, **conv) if bias is not None else F.Convolution(s, p, **conv)
            return self._act(F, y)
        w = compose(F, p, dictionary)
        y = F.Convolution(x, w, bias, **conv) if bias is not None else F.Convolution(x, w, **conv)
        return self._act(F, self._tie_deferred_shape(F, x, dictionary, y))

    def _tie_deferred_shape(self, F, x, dictionary, y):
        """With ``in_channels=0``, the composed form leaves D's ``m`` uninferable (``dot``
        does not infer backwards): tie it to x's channels through a 1x1 convolution of
        one pixel, weighted by zero."""
        if self.in_channels:
            return y
        pixel = F.slice(x, begin=(0, None, 0, 0), end=(1, None, 1, 1))
        hint = F.Convolution(pixel, dictionary, kernel=(1, 1), num_filter=self.dictionary_size,
                             no_bias=True)
        return F.broadcast_add(y, F.reshape(F.sum(hint) * 0, shape=(1, 1, 1, 1)))

    def _as_fully_connected(self, F, x, dictionary, p, bias):
        """The same layer when the kernel covers the whole unpadded input (AlexNet's fc6):
        a fully connected layer on the flattened map, much faster than such a convolution."""
        fc = dict(num_hidden=self.channels, no_bias=bias is None)
        tie = None
        if self.form == "two_stage":
            x = F.Convolution(x, dictionary, kernel=(1, 1), num_filter=self.dictionary_size,
                              no_bias=True)
            w = F.reshape(p, shape=(0, -1))  # (n, k*kh*kw), matching the flattened (k, kh, kw) map
        else:
            tie = x
            w = F.reshape(compose(F, p, dictionary), shape=(0, -1))
        y = F.FullyConnected(x, w, bias, **fc) if bias is not None else F.FullyConnected(x, w, **fc)
        y = F.reshape(y, shape=(0, -1, 1, 1))
        return self._act(F, y if tie is None else self._tie_deferred_shape(F, tie, dictionary, y))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels or None} -> {self.channels}, "
                f"kernel={self.kernel}, stride={self.strides}, pad={self.padding}, "
                f"k={self.dictionary_size}, eps={self.eps:.2e}, form={self.form})")


class LookupDense(_Lookup):
    """A fully connected layer on the flattened input, as a 1x1 lookup layer.

    Input ``(B, ...)`` flattened to ``(B, m)``, output ``(B, units)``.
    """

    def __init__(self, units: int, dictionary_size: int = 16, lambda_: float = 0.0,
                 initial_sparsity: float = 0.01, use_bias: bool = True, in_units: int = 0,
                 activation: Optional[str] = None, **kwargs):
        super().__init__(units, (1, 1), dictionary_size, lambda_, initial_sparsity, use_bias,
                         in_units, d_shape=(dictionary_size, in_units),
                         p_shape=(units, dictionary_size), activation=activation, **kwargs)

    def hybrid_forward(self, F, x, dictionary, lookup, alive, bias=None):
        p = self._masked(F, lookup, alive)
        x = F.flatten(x)
        fc = dict(num_hidden=self.channels, no_bias=bias is None)
        if self.form == "two_stage":
            s = F.FullyConnected(x, dictionary, num_hidden=self.dictionary_size, no_bias=True)
            y = F.FullyConnected(s, p, bias, **fc) if bias is not None else F.FullyConnected(s, p, **fc)
            return self._act(F, y)
        w = compose(F, p, dictionary, ndim=2)
        y = F.FullyConnected(x, w, bias, **fc) if bias is not None else F.FullyConnected(x, w, **fc)
        if not self.in_channels:  # see LookupConv2D
            hint = F.FullyConnected(F.slice_axis(x, axis=0, begin=0, end=1), dictionary,
                                    num_hidden=self.dictionary_size, no_bias=True)
            y = F.broadcast_add(y, F.reshape(F.sum(hint) * 0, shape=(1, 1)))
        return self._act(F, y)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels or None} -> {self.channels}, "
                f"k={self.dictionary_size}, eps={self.eps:.2e}, form={self.form})")


def conv2d(channels: int, kernel_size: int, strides: int = 1, padding: int = 0,
           dictionary_size: Optional[int] = None, lambda_: float = 0.0,
           initial_sparsity: float = 0.01, use_bias: bool = False, in_channels: int = 0,
           **kwargs) -> HybridBlock:
    """A lookup convolution, or a plain ``nn.Conv2D`` when ``dictionary_size`` is None or
    would be as large as ``channels * kh * kw`` (a lookup would save nothing)."""
    if dictionary_size is None or dictionary_size >= channels * kernel_size * kernel_size:
        return nn.Conv2D(channels, kernel_size, strides, padding, use_bias=use_bias,
                         in_channels=in_channels, **kwargs)
    return LookupConv2D(channels, kernel_size, strides, padding, dictionary_size, lambda_,
                        initial_sparsity, use_bias, in_channels, **kwargs)


def lookup_layers(net: HybridBlock) -> List[_Lookup]:
    """Every lookup layer in ``net``, in registration order."""
    return [b for b in tree.blocks(net) if isinstance(b, _Lookup)]


def lookup_config(net: HybridBlock) -> dict:
    """``{layer path: {dictionary_size, lambda, initial_sparsity, eps}}`` of every lookup layer
    (saved with checkpoints, so that a resume uses the layers it was trained with)."""
    return {path: dict(dictionary_size=b.dictionary_size, initial_sparsity=b.initial_sparsity,
                       eps=b.eps, **{"lambda": b.lambda_})
            for path, b in tree.named_blocks(net) if isinstance(b, _Lookup)}


def set_random_lookup(layer: _Lookup, density: float, seed: int = 0) -> None:
    """Give ``layer`` a random P in which each entry is live with probability ``density``,
    with magnitude above eps (benchmarks and tests of the inference form use it)."""
    rng = np.random.RandomState(seed)
    shape = layer.lookup.shape
    live = rng.random_sample(shape) < density
    magnitude = layer.eps + rng.random_sample(shape).astype(np.float32) / np.sqrt(np.prod(shape[1:]))
    sign = np.where(rng.random_sample(shape) < 0.5, -1.0, 1.0).astype(np.float32)
    layer.lookup.set_data(mx.nd.array(sign * magnitude * live))
    layer.alive.set_data(mx.nd.array(live, dtype=rule.ALIVE_DTYPE))
