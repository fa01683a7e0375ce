"""Lookup layers: a dictionary and a sparse lookup tensor in place of a weight.

A lookup layer with ``n`` outputs, ``m`` inputs, kernel ``kh x kw`` and
dictionary size ``k`` holds

* ``dictionary`` D, ``(k, m, 1, 1)`` (``(k, m)`` for :class:`LookupDense`),
* ``lookup`` P, ``(n, k, kh, kw)`` (``(n, k)``), kept sparse,
* ``alive``, same shape as P, 1 where an entry may still be non-zero (saved with
  the parameters, never trained: once an entry is pruned it stays pruned),
* ``bias``, ``(n,)``.

The effective lookup is ``P * alive * (|P| > eps)`` with the per-layer threshold
``eps = initial_sparsity / sqrt(kh * kw * k)``; the layer computes
``conv(X, W)`` with ``W = einsum('nkrc,km->nmrc', P_eff, D)`` ("composed"), or
the same as ``conv(conv1x1(X, D), P_eff)`` ("two_stage"), whichever
:func:`lcnn_gluon.flops.choose_forms` found cheaper; both give the same numbers.
Multiplying by the mask makes autograd mask P's gradient too.

On CPU the mask, the L1 term and pruning run as single-pass C++ kernels of
:mod:`lcnn_gluon.ops` (``lcnn_lookup_threshold``, ``_l1``, ``_prune``) when the
library is built; MXNet's elementwise operators do the same in 4-5 passes with
temporaries as large as P (seconds per step for AlexNet's 151M-entry fc6).
``TRAIN_WITH_OPS = False`` forces the MXNet-operator form (tests compare both).

The training loop calls, around ``trainer.step(batch_size)``::

    nn.add_l1_grad(layers, samples_per_device)   # lambda * eps * sign(P), see below
    trainer.step(batch_size)
    nn.prune(layers)                              # alive &= |P| > eps; P *= alive

or nothing extra when the trainer's optimizer is :class:`LookupSGD` (what
:func:`optimizer_for` picks for ``sgd`` on CPU): it does all three in its step.
"""
from __future__ import annotations

import math
import weakref
from typing import Iterable, List, Optional, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from . import ops, tree

IntPair = Union[int, Tuple[int, int]]
FORMS = ("composed", "two_stage")
TRAIN_WITH_OPS = True  # the C++ training kernels on CPU when the library is available


def _kernels_for(ctxs: Iterable[mx.Context]) -> bool:
    return TRAIN_WITH_OPS and all(c.device_type == "cpu" for c in ctxs) and ops.available()


def _pair(v: IntPair) -> Tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


class _Lookup(HybridBlock):
    """Parameters, threshold and bookkeeping shared by the convolution and dense forms."""

    def __init__(self, channels: int, kernel: Tuple[int, int], dictionary_size: int, lambda_: float,
                 initial_sparsity: float, use_bias: bool, in_channels: int, d_shape: tuple,
                 p_shape: tuple, activation: Optional[str] = None, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        if dictionary_size < 1 or channels < 1:
            raise ValueError(f"dictionary_size {dictionary_size} and channels {channels} must be >= 1")
        if not 0 <= initial_sparsity < 1:
            raise ValueError(f"initial_sparsity {initial_sparsity} must be in [0, 1)")
        self.channels, self.kernel, self.dictionary_size = channels, kernel, dictionary_size
        self.in_channels, self.lambda_, self.initial_sparsity = in_channels, lambda_, initial_sparsity
        self.eps = initial_sparsity / math.sqrt(kernel[0] * kernel[1] * dictionary_size)
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
                                         differentiable=False)
            self.bias = (self.params.get("bias", shape=(channels,), init="zeros")
                         if use_bias else None)
        self.lookup.lookup_layer = weakref.ref(self)  # for LookupSGD, which sees parameters only

    # ---- the sparse lookup tensor, outside the graph (packing, counting, tests)
    def effective_lookup(self, ctx: Optional[mx.Context] = None) -> mx.nd.NDArray:
        """P with pruned and below-threshold entries zeroed, P's shape."""
        p = self.lookup.data(ctx)
        return p * self.alive.data(ctx) * (mx.nd.abs(p) > self.eps)

    def density(self) -> float:
        """Fraction of P's entries that are non-zero in the forward pass."""
        return float((self.effective_lookup() != 0).mean().asscalar())

    def dense_weight(self) -> mx.nd.NDArray:
        """The equivalent dense weight ``einsum('nkrc,km->nmrc', P_eff, D)``: ``(n, m, kh, kw)``,
        or ``(n, m)`` for :class:`LookupDense`."""
        p = self.effective_lookup()
        d = self.dictionary.data().reshape((self.dictionary_size, -1))
        p4 = p.reshape((p.shape[0], p.shape[1], self.kernel[0], self.kernel[1]))
        w = mx.nd.dot(p4.transpose((0, 2, 3, 1)), d).transpose((0, 3, 1, 2))
        return w.reshape((w.shape[0], -1)) if p.ndim == 2 else w

    def _masked(self, F, lookup, alive):
        if _kernels_for(self.lookup.list_ctx()):
            return F.lcnn_lookup_threshold(lookup, alive, eps=self.eps)
        # the mask is a constant for autograd (alive has no gradient, comparisons none):
        # P's gradient is masked by one multiplication
        return lookup * (alive * (F.abs(lookup) > self.eps))

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
        self.as_fc = False  # set by flops.choose_forms when the kernel covers the input
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
        d = F.reshape(dictionary, shape=(0, -1))  # (k, m)
        w = F.transpose(F.dot(F.transpose(p, axes=(0, 2, 3, 1)), d), axes=(0, 3, 1, 2))
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
            d = F.reshape(dictionary, shape=(0, -1))
            w = F.reshape(F.transpose(F.dot(F.transpose(p, axes=(0, 2, 3, 1)), d), axes=(0, 3, 1, 2)),
                          shape=(0, -1))
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
        w = F.dot(p, dictionary)
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


# ---------------------------------------------------------------- training helpers
def lookup_layers(net: HybridBlock) -> List[_Lookup]:
    """Every lookup layer in ``net``, in registration order."""
    return [b for b in tree.blocks(net) if isinstance(b, _Lookup)]


def lookup_config(net: HybridBlock) -> dict:
    """``{layer path: {dictionary_size, lambda, initial_sparsity, eps}}`` of every lookup layer
    (saved with checkpoints, so that a resume uses the layers it was trained with)."""
    return {path: dict(dictionary_size=b.dictionary_size, initial_sparsity=b.initial_sparsity,
                       eps=b.eps, **{"lambda": b.lambda_})
            for path, b in tree.named_blocks(net) if isinstance(b, _Lookup)}


def add_l1_grad(layers: Iterable[_Lookup], samples_per_device: float) -> None:
    """Add the L1 term ``lambda * eps * sign(P)`` to P's gradient, on entries above eps.

    Gluon's ``trainer.step(batch_size)`` divides gradients by the global batch size
    after summing them over devices (and workers); each device adds the term times
    the number of samples it processed, so the update sees exactly ``lambda * eps``.
    """
    for layer in layers:
        if not layer.lambda_:
            continue
        strength = layer.lambda_ * layer.eps * samples_per_device
        for p, g in zip(layer.lookup.list_data(), layer.lookup.list_grad()):
            # sign(P) on live entries; retired entries are exactly 0 since the last prune()
            if _kernels_for([p.context]):
                mx.nd.lcnn_lookup_l1(g, p, eps=layer.eps, strength=strength, out=g)
            else:
                g += strength * ((p > layer.eps) - (p < -layer.eps))


def prune(layers: Iterable[_Lookup]) -> None:
    """After an update: retire entries now at or below eps and zero every retired entry.

    ``alive`` only goes from 1 to 0, so neither momentum nor weight decay can
    bring a pruned entry back, on any device or worker.
    """
    for layer in layers:
        for p, a in zip(layer.lookup.list_data(), layer.alive.list_data()):
            if _kernels_for([p.context]):
                mx.nd.lcnn_lookup_prune(p, a, eps=layer.eps, out=p)  # a updated in place
            else:
                a *= mx.nd.abs(p) > layer.eps
                p *= a


def set_random_lookup(layer: _Lookup, density: float, seed: int = 0) -> None:
    """Give ``layer`` a random P in which each entry is live with probability ``density``,
    with magnitude above eps (benchmarks and tests of the inference form use it)."""
    rng = np.random.RandomState(seed)
    shape = layer.lookup.shape
    live = (rng.random_sample(shape) < density).astype(np.float32)
    magnitude = layer.eps + rng.random_sample(shape).astype(np.float32) / np.sqrt(np.prod(shape[1:]))
    sign = np.where(rng.random_sample(shape) < 0.5, -1.0, 1.0).astype(np.float32)
    layer.lookup.set_data(mx.nd.array(sign * magnitude * live))
    layer.alive.set_data(mx.nd.array(live))


@mx.optimizer.register
class LookupSGD(mx.optimizer.SGD):
    """SGD with momentum that applies the lookup layers' rule in its own step.

    For each lookup tensor P (on CPU, with the operator library): L1, gradient mask,
    momentum SGD with weight decay and pruning in one C++ pass (``lcnn_lookup_sgd``),
    the same arithmetic as ``add_l1_grad`` + SGD + ``prune`` without their ~8 passes
    over P. Every other parameter: MXNet's SGD. Registered as ``"lookupsgd"``.
    """

    def __init__(self, momentum: float = 0.9, **kwargs):
        if momentum <= 0:
            raise ValueError("LookupSGD needs momentum > 0: use 'sgd' with add_l1_grad and prune")
        super().__init__(momentum=momentum, **kwargs)

    def _lookup_layer(self, index: int) -> Optional["_Lookup"]:
        ref = getattr(self.param_dict.get(index), "lookup_layer", None)
        return ref() if ref is not None else None

    def _update_impl(self, indices, weights, grads, states, multi_precision=False):
        if not isinstance(indices, (tuple, list)):
            indices, weights, grads, states = [indices], [weights], [grads], [states]
        mine = [j for j, i in enumerate(indices) if self._lookup_layer(i) is not None]
        if mine:
            if multi_precision or not _kernels_for(weights[j].context for j in mine):
                raise RuntimeError("LookupSGD runs on CPU in float32 with the operator library "
                                   "(lcnn_gluon.ops); elsewhere use 'sgd' with add_l1_grad and prune")
            picked = [indices[j] for j in mine]
            self._update_count(picked)
            for j, lr, wd in zip(mine, self._get_lrs(picked), self._get_wds(picked)):
                layer = self._lookup_layer(indices[j])
                alive = layer.alive.data(weights[j].context)
                mx.nd.lcnn_lookup_sgd(weights[j], grads[j], states[j], alive, out=weights[j], lr=lr, wd=wd,
                                      momentum=self.momentum, rescale_grad=self.rescale_grad,
                                      clip_gradient=self.clip_gradient or -1.0, eps=layer.eps,
                                      l1=layer.lambda_ * layer.eps)
        rest = sorted(set(range(len(indices))) - set(mine))
        if rest:
            super()._update_impl(*([x[j] for j in rest] for x in (indices, weights, grads, states)),
                                 multi_precision=multi_precision)


def optimizer_for(name: str, ctxs: Iterable[mx.Context], momentum: float,
                  update_on_kvstore: bool = False) -> str:
    """``"lookupsgd"`` where ``"sgd"`` can run as :class:`LookupSGD` (CPU, momentum, the
    library, updates on this process), else ``name`` (then the loop calls add_l1_grad/prune)."""
    fusable = name == "sgd" and momentum > 0 and not update_on_kvstore and _kernels_for(ctxs)
    return "lookupsgd" if fusable else name


def updates_lookups(trainer: mx.gluon.Trainer) -> bool:
    """Whether ``trainer``'s optimizer applies L1 and pruning itself (:class:`LookupSGD`)."""
    return isinstance(trainer._optimizer, LookupSGD)
