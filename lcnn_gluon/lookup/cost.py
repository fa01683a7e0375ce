"""Counting the multiplications of a lookup layer: the paper's speedup, and the training forms.

For one image (docs/design.md, "Counting"): a lookup layer with ``m`` inputs on an
``H x W`` map, padding ``(ph, pw)``, dictionary size ``k``, kernel ``kh x kw``, ``out``
output elements and a fraction ``density`` of P live costs

    (H + 2 ph) (W + 2 pw) k m        the dictionary's 1x1 product over the padded input
  + out kh kw k density              the lookups

(for a kernel narrower than its stride, only the padded positions in stride phases the
kernel reaches count in the product: a 1x1 stride-2 layer's quarter)
and as a dense layer of the same shape ``out m kh kw``. A fully connected lookup layer
is the 1x1 case on a 1x1 map. Where the lookup form counts more than the dense one (a
strided layer whose dictionary product runs over the full-resolution input, or a dense
P), inference runs the layer dense, ``W = P x D`` (:func:`runs_dense`), and it counts
as dense. :mod:`lcnn_gluon.flops` applies this to a traced network.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .layers import LookupConv2D, _Lookup


def _reached(padded: int, kernel: int, stride: int) -> int:
    """Positions ``i`` of a padded axis whose stride phase ``i % stride`` some tap reaches: taps
    ``0 .. kernel-1`` fall in phases ``tap % stride``, so all of them unless the kernel is
    narrower than its stride (the operator's product skips the others, ``ReachedPhases``)."""
    return sum(len(range(phase, padded, stride)) for phase in range(min(kernel, stride)))


def _sizes(layer: _Lookup, in_shape: Sequence[int]) -> Tuple[int, int, int]:
    """``(m, padded input pixels the kernel reaches, input pixels)`` of ``layer`` on one
    ``in_shape`` input."""
    if isinstance(layer, LookupConv2D):
        (h, w), (ph, pw), (kh, kw), (sh, sw) = in_shape[1:], layer.padding, layer.kernel, layer.strides
        return in_shape[0], _reached(h + 2 * ph, kh, sh) * _reached(w + 2 * pw, kw, sw), h * w
    return int(np.prod(in_shape)), 1, 1


def dense_mults(layer: _Lookup, in_shape: Sequence[int], out_elements: int) -> int:
    """Multiplications of a dense layer of ``layer``'s shape, for one image."""
    m, _, _ = _sizes(layer, in_shape)
    return out_elements * m * layer.kernel[0] * layer.kernel[1]


def product_mults(layer: _Lookup, in_shape: Sequence[int]) -> int:
    """Multiplications of ``layer``'s dictionary product (its first stage), for one image."""
    m, padded, _ = _sizes(layer, in_shape)
    return padded * layer.dictionary_size * m


def lookup_mults(layer: _Lookup, in_shape: Sequence[int], out_elements: int, density: float) -> int:
    """Multiplications of ``layer`` with a fraction ``density`` of P live, for one image: its
    dictionary product and its lookups."""
    k, (kh, kw) = layer.dictionary_size, layer.kernel
    return int(round(product_mults(layer, in_shape) + out_elements * kh * kw * k * density))


def runs_dense(layer: _Lookup, in_shape: Sequence[int], out_elements: int, density: float) -> bool:
    """Whether inference runs ``layer`` as a dense layer of weight ``W = P x D``: its lookup
    form counts more multiplications than that dense layer (``lcnn_gluon.export.sparsify``)."""
    return lookup_mults(layer, in_shape, out_elements, density) > dense_mults(layer, in_shape, out_elements)


def training_costs(layer: _Lookup, in_shape: Sequence[int], out_elements: int,
                   batch_size: int) -> Tuple[int, int]:
    """Multiplications of one training forward pass over ``batch_size`` images in each form:
    ``composed`` builds ``W = P x D`` once (``n k kh kw m``) and runs a dense layer;
    ``two_stage`` runs the dictionary product and a ``kh x kw`` convolution over ``k``
    channels, both per image (dense P: training does not skip dead entries)."""
    m, _, pixels = _sizes(layer, in_shape)
    n, k, (kh, kw) = layer.channels, layer.dictionary_size, layer.kernel
    composed = n * k * kh * kw * m + batch_size * out_elements * m * kh * kw
    two_stage = batch_size * (pixels * k * m + out_elements * k * kh * kw)
    return composed, two_stage
