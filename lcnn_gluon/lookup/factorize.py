"""Starting a lookup layer from a trained dense weight: ``W ~ P x D`` with P sparse.

The dense weight ``W`` ``(n, m, kh, kw)`` (or ``(n, m)``) is seen as ``n * kh * kw`` vectors of
length ``m``, one per filter tap: the rows of ``V``. Then, alternately:

1. ``D`` ``(k, m)``: first the ``k`` leading right singular vectors of ``V`` (the best rank-k
   basis), later the least-squares fit ``D = argmin ||V - P D||`` for the current P;
2. ``P``: each tap vector coded on D (its projection ``V D+``), then the layer's largest
   coefficients kept, a fraction ``density`` of them, and only those above the layer's
   threshold ``eps`` (a sparse coding step by hard thresholding).

Memory: V is never formed; it is read from W a block of outputs at a time. P is written in the
layer's layout ``(n, k, kh, kw)`` directly. Beside W and P the work holds blocks of
``CHUNK_ROWS`` tap vectors and ``k x k`` / ``k x m`` matrices.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator, Tuple

import numpy as np

CHUNK_ROWS = 1 << 12  # tap vectors coded at a time: temporaries of a few MB, still long GEMMs
RIDGE = 1e-6  # relative ridge of the least-squares D update (a vector P never uses stays put)
EXACT_SVD_MAX = 2048  # input widths up to which V's right singular vectors come from V^T V exactly
POWER_ITERATIONS = 2  # of the randomized range finder above it (enough for leading directions)
OVERSAMPLING = 10  # extra random directions of the range finder
CUT_BINS = 1 << 16  # histogram bins of the magnitudes when finding the density cut (two passes)


@dataclasses.dataclass
class Factorization:
    """``W ~ P x D``: the arrays in the layer's shapes, and how good the approximation is."""

    dictionary: np.ndarray  # (k, m)
    lookup: np.ndarray  # (n, k, kh, kw) or (n, k)
    relative_error: float  # ||P x D - W|| / ||W||
    density: float  # fraction of P's entries that are non-zero


class _Taps:
    """W ``(n, m, T)`` seen as V ``(n * T, m)`` and P ``(n, k, T)`` as ``(n * T, k)``, in blocks of
    whole outputs (a block is a copy of about ``CHUNK_ROWS`` rows)."""

    def __init__(self, weight: np.ndarray):
        self.w = weight.reshape(weight.shape[0], weight.shape[1], -1)
        self.n, self.m, self.taps = self.w.shape
        self.step = max(1, CHUNK_ROWS // self.taps)

    def blocks(self) -> Iterator[slice]:
        return (slice(i, min(i + self.step, self.n)) for i in range(0, self.n, self.step))

    def v(self, outputs: slice) -> np.ndarray:
        return np.ascontiguousarray(self.w[outputs].transpose(0, 2, 1), np.float32).reshape(-1, self.m)

    @staticmethod
    def rows(p: np.ndarray, outputs: slice) -> np.ndarray:
        return np.ascontiguousarray(p[outputs].transpose(0, 2, 1)).reshape(-1, p.shape[1])

    @staticmethod
    def set_rows(p: np.ndarray, outputs: slice, rows: np.ndarray) -> None:
        block = p[outputs]
        block[...] = rows.reshape(block.shape[0], block.shape[2], block.shape[1]).transpose(0, 2, 1)


def _leading_directions(taps: _Taps, k: int) -> np.ndarray:
    """The ``k`` leading right singular vectors of V, as rows ``(k, m)``: from the ``m x m`` Gram
    matrix, or by a randomized range finder (Halko et al.) for wide layers."""
    m = taps.m
    if m <= EXACT_SVD_MAX:
        gram = np.zeros((m, m))
        for outputs in taps.blocks():
            v = taps.v(outputs)
            gram += v.T @ v
        _, _, vt = np.linalg.svd(gram, hermitian=True)
        return vt[:k].astype(np.float32)
    omega = np.random.RandomState(0).standard_normal((m, min(m, k + OVERSAMPLING))).astype(np.float32)
    for _ in range(POWER_ITERATIONS + 1):  # omega <- orth(V^T V omega): the top of V's row space
        z = np.zeros_like(omega)
        for outputs in taps.blocks():
            v = taps.v(outputs)
            z += v.T @ (v @ omega)
        omega, _ = np.linalg.qr(z)
    small = np.concatenate([taps.v(outputs) @ omega for outputs in taps.blocks()])  # V Q, (rows, k+)
    _, _, vt = np.linalg.svd(small, full_matrices=False)
    return (vt[:k] @ omega.T).astype(np.float32)


def _blocks_of(p: np.ndarray) -> Iterator[np.ndarray]:
    step = max(1, CHUNK_ROWS * p.shape[1] // max(p[0].size, 1))
    return (p[i:i + step] for i in range(0, p.shape[0], step))


def _cut(p: np.ndarray, keep: int) -> float:
    """The magnitude of ``p``'s ``keep``-th largest entry (1 <= keep <= p.size), exactly: a
    histogram pass finds its bin, a second pass collects that bin's values."""
    top = max(float(np.abs(b).max()) for b in _blocks_of(p))
    if top == 0:
        return 0.0
    scale = CUT_BINS / top

    def bins(block):
        return np.minimum((np.abs(block) * scale).astype(np.int32), CUT_BINS - 1).ravel()
    counts = sum(np.bincount(bins(b), minlength=CUT_BINS) for b in _blocks_of(p))
    above = np.cumsum(counts[::-1])[::-1]  # above[i]: entries in bins i and higher
    i = int(np.nonzero(above >= keep)[0][-1])
    inside = np.concatenate([np.abs(b).ravel()[bins(b) == i] for b in _blocks_of(p)])
    rank = keep - (int(above[i + 1]) if i + 1 < CUT_BINS else 0)  # rank-th largest inside bin i
    return float(np.partition(inside, inside.size - rank)[inside.size - rank])


def _sparsify(p: np.ndarray, density: float, eps: float) -> None:
    """Keep the largest ``density`` fraction of ``p``'s coefficients (by magnitude, over the whole
    layer: a layer of one dictionary vector is sparse too) and none at or below ``eps``, in place."""
    keep = int(round(density * p.size))
    cut = np.inf if keep == 0 else (_cut(p, keep) if keep < p.size else 0.0)
    for block in _blocks_of(p):
        block[(np.abs(block) < cut) | (np.abs(block) <= eps)] = 0.0


def factorize(weight: np.ndarray, k: int, eps: float, density: float, iterations: int = 3) -> Factorization:
    """``D`` ``(k, m)`` and sparse ``P`` with ``P x D ~ weight``: at most a fraction ``density`` of
    P's entries kept (ties at the cut aside), none at or below ``eps`` (dead under the lookup rule)."""
    taps = _Taps(weight)
    d = np.zeros((k, taps.m), np.float32)
    d[:min(k, taps.m)] = _leading_directions(taps, min(k, taps.m))
    if k > taps.m:  # an overcomplete dictionary: the vectors beyond a basis start random, unit length
        extra = np.random.RandomState(0).standard_normal((k - taps.m, taps.m)).astype(np.float32)
        d[taps.m:] = extra / np.linalg.norm(extra, axis=1, keepdims=True)
    p = np.zeros((taps.n, k, taps.taps), np.float32)
    for it in range(iterations):
        d_pinv = np.linalg.pinv(d).astype(np.float32)
        for outputs in taps.blocks():
            taps.set_rows(p, outputs, taps.v(outputs) @ d_pinv)
        _sparsify(p, density, eps)
        if it + 1 == iterations:
            break
        gram, cross = np.zeros((k, k)), np.zeros((k, taps.m))
        for outputs in taps.blocks():  # float32 products per block, summed in float64
            rows = taps.rows(p, outputs)
            gram += rows.T @ rows
            cross += rows.T @ taps.v(outputs)
        ridge = RIDGE * max(np.trace(gram) / k, 1e-12)  # refit D to the codes, then code again
        d = np.linalg.solve(gram + ridge * np.eye(k), cross).astype(np.float32)
    residual = norm = 0.0
    for outputs in taps.blocks():
        v = taps.v(outputs)
        residual += float(np.square(v - taps.rows(p, outputs) @ d).sum())
        norm += float(np.square(v).sum())
    return Factorization(d, p.reshape((taps.n, k) + weight.shape[2:]),
                         float(np.sqrt(residual / max(norm, 1e-24))), float(np.count_nonzero(p)) / p.size)


def shape_for(layer_weight_shape: Tuple[int, ...], lookup_shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The dense weight's shape as the lookup layer's ``(n, m, kh, kw)`` (a ``Dense`` weight
    ``(n, m * kh * kw)`` in front of a convolution-shaped lookup, as AlexNet's fc6)."""
    n, _, *taps = lookup_shape
    if len(layer_weight_shape) == 2 and taps:
        return (n, layer_weight_shape[1] // int(np.prod(taps))) + tuple(taps)
    return tuple(layer_weight_shape)
