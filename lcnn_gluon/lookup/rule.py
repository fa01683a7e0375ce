"""The lookup rule: which entries of a lookup tensor P count, and how L1 pushes them to zero.

The one place these facts are written (docs/design.md, "Sparsity of P"):

* the threshold of a layer is ``eps = initial_sparsity / sqrt(kh * kw * k)``;
* an entry is *live* while its kept-mask (``alive``) is set and ``|P| > eps``; the forward
  pass uses ``P * live`` (also in evaluation), and P's gradient is masked the same way;
* after each update, entries that are no longer live are retired for good (``alive`` only
  goes from 1 to 0) and set to zero, so momentum and weight decay cannot revive them;
* the L1 term adds ``lambda * eps * sign(P)`` to the gradient of live entries (per sample:
  Gluon's ``trainer.step(batch)`` divides summed gradients by the batch size).

The kept-mask is stored as one byte per entry (``ALIVE_DTYPE``). Each operation runs as a
one-pass C++ kernel of the operator library on CPU when it is built (``kernels``), and as
MXNet operators otherwise (several passes with temporaries as large as P); both give the
same numbers. ``kernel_attributes`` is what the C++ kernels receive: they re-derive nothing.
"""
from __future__ import annotations

import math
from typing import Iterable

import mxnet as mx
import numpy as np

from .. import ops

ALIVE_DTYPE = "uint8"
USE_KERNELS = True  # False forces the MXNet-operator form (tests compare both)


def threshold(initial_sparsity: float, kernel: tuple, dictionary_size: int) -> float:
    """``eps`` of a layer with kernel ``(kh, kw)`` and ``dictionary_size`` entries."""
    if not 0 <= initial_sparsity < 1:
        raise ValueError(f"initial_sparsity {initial_sparsity} must be in [0, 1)")
    return initial_sparsity / math.sqrt(kernel[0] * kernel[1] * dictionary_size)


def l1_strength(lambda_: float, eps: float) -> float:
    """What L1 adds to the gradient of a live entry, per sample, times ``sign(P)``."""
    return lambda_ * eps


def kernel_attributes(eps: float, lambda_: float) -> dict:
    """The rule's parameters, as the C++ training kernels take them (``eps``, ``l1``)."""
    return dict(eps=eps, l1=l1_strength(lambda_, eps))


def kernels(ctxs: Iterable[mx.Context]) -> bool:
    """Whether the C++ kernels serve arrays on ``ctxs`` (CPU only, library built)."""
    return USE_KERNELS and all(c.device_type == "cpu" for c in ctxs) and ops.available()


def masked(F, lookup, alive, eps: float, use_kernels: bool):
    """``P * live`` inside a graph (``F`` is ``mx.nd`` or ``mx.sym``); P's gradient is masked too
    (the mask is a constant for autograd: ``alive`` has no gradient, comparisons none)."""
    if use_kernels:
        return F.lcnn_lookup_threshold(lookup, alive, eps=eps)
    return lookup * (F.cast(alive, "float32") * (F.abs(lookup) > eps))


def live_mask(lookup: np.ndarray, alive: np.ndarray, eps: float) -> np.ndarray:
    """Boolean mask of the live entries (numpy)."""
    return (alive != 0) & (np.abs(lookup) > eps)


def effective(lookup: mx.nd.NDArray, alive: mx.nd.NDArray, eps: float) -> mx.nd.NDArray:
    """``P * live`` outside a graph (packing, counting, tests)."""
    return lookup * alive.astype("float32") * (mx.nd.abs(lookup) > eps)


def add_l1(grad: mx.nd.NDArray, lookup: mx.nd.NDArray, eps: float, strength: float) -> None:
    """``grad += strength * sign(P)`` where ``|P| > eps`` (retired entries are exactly 0), in place."""
    if kernels([lookup.context]):
        mx.nd.lcnn_lookup_l1(grad, lookup, eps=eps, strength=strength, out=grad)
    else:
        grad += strength * ((lookup > eps) - (lookup < -eps))


def prune(lookup: mx.nd.NDArray, alive: mx.nd.NDArray, eps: float) -> None:
    """Retire the entries that are not live any more and zero every retired entry, in place."""
    if kernels([lookup.context]):
        mx.nd.lcnn_lookup_prune(lookup, alive, eps=eps, out=lookup)  # alive updated in place
    else:
        keep = alive.astype("float32") * (mx.nd.abs(lookup) > eps)
        alive[:] = keep.astype(ALIVE_DTYPE)
        lookup *= keep


def sgd_step(lookup, grad, momentum_state, alive, eps: float, lambda_: float, **sgd) -> None:
    """L1, mask, momentum SGD with weight decay and pruning of one P in a single C++ pass
    (``sgd``: lr, wd, momentum, rescale_grad, clip_gradient); P updated in place."""
    mx.nd.lcnn_lookup_sgd(lookup, grad, momentum_state, alive, out=lookup,
                          **kernel_attributes(eps, lambda_), **sgd)
