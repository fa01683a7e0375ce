"""Starting a lookup layer from a trained dense weight: ``W ~ P x D`` with P sparse.

The dense weight ``W`` ``(n, m, kh, kw)`` (or ``(n, m)``) is seen as ``n * kh * kw`` vectors of
length ``m`` (one per filter tap, the rows of ``V``). Then, alternately:

1. ``D`` ``(k, m)``: first the ``k`` leading right singular vectors of ``V`` (the best rank-k
   basis), later the least-squares fit ``D = argmin ||V - P D||`` for the current P;
2. ``P``: each tap vector coded on D (its projection ``V D+``), then the layer's largest
   coefficients kept, a fraction ``density`` of them, and only those above the layer's
   threshold ``eps`` (a sparse coding step by hard thresholding).

V is processed in row chunks, so beside W the work holds one copy of W's size (V) and P.
"""
from __future__ import annotations

import dataclasses
from typing import Tuple

import numpy as np

CHUNK_ROWS = 1 << 14  # tap vectors coded at a time (keeps the projections' temporary small)
RIDGE = 1e-6  # relative ridge of the least-squares D update (a vector P never uses stays put)


@dataclasses.dataclass
class Factorization:
    """``W ~ P x D``: the arrays in the layer's shapes, and how good the approximation is."""

    dictionary: np.ndarray  # (k, m)
    lookup: np.ndarray  # (n, k, kh, kw) or (n, k)
    relative_error: float  # ||P x D - W|| / ||W||
    density: float  # fraction of P's entries that are non-zero


def _project(v: np.ndarray, d_pinv: np.ndarray, p: np.ndarray) -> None:
    """``p = v d+`` (each tap vector's least-squares coefficients), in row chunks."""
    for start in range(0, v.shape[0], CHUNK_ROWS):
        p[start:start + CHUNK_ROWS] = v[start:start + CHUNK_ROWS] @ d_pinv


def _sparsify(p: np.ndarray, density: float, eps: float) -> None:
    """Keep the largest ``density`` fraction of ``p``'s coefficients (by magnitude, over the whole
    layer: a layer of one dictionary vector is sparse too) and none at or below ``eps``."""
    keep = int(round(density * p.size))
    if keep < p.size:
        magnitude = np.abs(p).ravel()
        cut = np.partition(magnitude, p.size - keep)[p.size - keep] if keep else np.inf
        p[np.abs(p) < cut] = 0.0
    p[np.abs(p) <= eps] = 0.0


EXACT_SVD_MAX = 2048  # input widths up to which V's right singular vectors come from V^T V exactly
POWER_ITERATIONS = 2  # of the randomized range finder above it (enough for leading directions)


def _leading_directions(v: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading right singular vectors of ``v`` ``(rows, m)``, as rows ``(k, m)``: from the
    ``m x m`` Gram matrix, or by a randomized range finder (Halko et al.) for wide layers."""
    m = v.shape[1]
    if m <= EXACT_SVD_MAX:
        _, _, vt = np.linalg.svd(v.T.astype(np.float64) @ v, hermitian=True)
        return vt[:k]
    y = v @ np.random.RandomState(0).standard_normal((m, min(m, k + 10))).astype(np.float32)
    for _ in range(POWER_ITERATIONS):
        y, _ = np.linalg.qr(y)
        y = v @ (v.T @ y)
    q, _ = np.linalg.qr(y)
    _, _, vt = np.linalg.svd(q.T @ v, full_matrices=False)
    return vt[:k]


def factorize(weight: np.ndarray, k: int, eps: float, density: float, iterations: int = 3) -> Factorization:
    """``D`` ``(k, m)`` and sparse ``P`` with ``P x D ~ weight``: at most a fraction ``density`` of
    P's entries kept, none at or below ``eps`` (dead under the lookup rule)."""
    n, m = weight.shape[:2]
    taps = weight.shape[2:]
    v = np.ascontiguousarray(np.moveaxis(weight.reshape(n, m, -1), 1, 2).reshape(-1, m), np.float32)
    d = np.zeros((k, m), np.float32)
    d[:min(k, m)] = _leading_directions(v, min(k, m))
    if k > m:  # an overcomplete dictionary: the vectors beyond a basis start random, unit length
        extra = np.random.RandomState(0).standard_normal((k - m, m)).astype(np.float32)
        d[m:] = extra / np.linalg.norm(extra, axis=1, keepdims=True)
    p = np.zeros((v.shape[0], k), np.float32)
    for it in range(iterations):
        _project(v, np.linalg.pinv(d).astype(np.float32), p)
        _sparsify(p, density, eps)
        gram, cross = np.zeros((k, k)), np.zeros((k, m))
        for start in range(0, v.shape[0], CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            gram += p[rows].T.astype(np.float64) @ p[rows]
            cross += p[rows].T.astype(np.float64) @ v[rows]
        if it + 1 < iterations:  # refit D to the codes, then code again
            ridge = RIDGE * max(np.trace(gram) / k, 1e-12)
            d = np.linalg.solve(gram + ridge * np.eye(k), cross).astype(np.float32)
    residual = sum(float(np.square(v[s] - p[s] @ d).sum()) for s in
                   (slice(i, i + CHUNK_ROWS) for i in range(0, v.shape[0], CHUNK_ROWS)))
    lookup = np.moveaxis(p.reshape((n,) + (int(np.prod(taps)) if taps else 1,) + (k,)), 2, 1)
    lookup = lookup.reshape((n, k) + taps)
    return Factorization(d, np.ascontiguousarray(lookup), float(np.sqrt(residual) / max(np.linalg.norm(v), 1e-12)),
                         float(np.count_nonzero(p)) / p.size)


def shape_for(layer_weight_shape: Tuple[int, ...], lookup_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The dense weight's shape as the lookup layer's ``(n, m, kh, kw)`` (a ``Dense`` weight
    ``(n, m * kh * kw)`` in front of a convolution-shaped lookup, as AlexNet's fc6)."""
    n, _, *taps = lookup_shape
    if len(layer_weight_shape) == 2 and taps:
        return (n, layer_weight_shape[1] // int(np.prod(taps))) + tuple(taps)
    return tuple(layer_weight_shape)
