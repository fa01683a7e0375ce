"""The packed form of a lookup layer, as the inference operator ``lcnn_lookup_conv`` reads it.

The contract (inputs, their order, dtypes and invariants; the attributes) is written once,
in ``operators/lookup_conv_format.h``, for both languages; ``INPUTS`` and ``ATTRIBUTES``
here name the same fields in the same order, and ``tests/test_packed_format.py`` checks
that the two agree. P ``(n, k, kh, kw)`` is stored per output channel as CSR: ``indptr``
``(n + 1,)``, ``indices`` ``(nnz,)`` packing ``(d * kh + r) * kw + c``, ``coefs`` ``(nnz,)``.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Optional, Tuple

import numpy as np

INPUTS = ("data", "dictionary", "indptr", "indices", "coefs", "bias", "residual")
ATTRIBUTES = ("kernel", "stride", "pad", "num_filter", "act", "pool_kernel", "pool_stride", "pool_pad",
              "residual", "dictionary_layout")
# dictionary_layout: D as (k, m), or transposed (m, k) for a fully connected layer, whose
# product then reads only the rows of its non-zero inputs at batch 1
DICTIONARY_LAYOUTS = ("km", "mk")
PACKED = INPUTS[1:6]  # what a packed layer holds (the parameters of the operator)
FORMAT_HEADER = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                             "operators", "lookup_conv_format.h")


def pack_index(d, r, c, kernel: Tuple[int, int]):
    """The packed index of dictionary vector ``d`` at kernel tap ``(r, c)`` (arrays or ints)."""
    return (d * kernel[0] + r) * kernel[1] + c


def unpack_index(index, kernel: Tuple[int, int]):
    """``(d, r, c)`` of packed indices."""
    return index // (kernel[0] * kernel[1]), index % (kernel[0] * kernel[1]) // kernel[1], index % kernel[1]


@dataclasses.dataclass
class PackedLookup:
    """One lookup layer in packed form; the arrays have the dtypes and shapes of the contract."""

    dictionary: np.ndarray  # (k, m) float32
    indptr: np.ndarray  # (n + 1,) int32
    indices: np.ndarray  # (nnz,) int32
    coefs: np.ndarray  # (nnz,) float32
    bias: np.ndarray  # (n,) float32
    kernel: Tuple[int, int]

    @classmethod
    def pack(cls, lookup: np.ndarray, dictionary: np.ndarray, bias: Optional[np.ndarray] = None,
             scale: Optional[np.ndarray] = None, shift: Optional[np.ndarray] = None) -> "PackedLookup":
        """Pack the live P (``(n, k, kh, kw)`` or ``(n, k)``, zeros where dead) with its
        dictionary and bias; ``scale`` and ``shift`` ``(n,)`` fold an affine map of each output
        channel (a BatchNorm at inference: coefficients and bias times scale, plus shift)."""
        n, k = lookup.shape[:2]
        kernel = tuple(lookup.shape[2:]) if lookup.ndim == 4 else (1, 1)
        flat = lookup.reshape(n, -1)
        rows, cols = np.nonzero(flat)
        coefs = flat[rows, cols] * (scale[rows] if scale is not None else 1.0)
        indptr = np.zeros(n + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        if not len(cols):  # MXNet 1.x holds no zero-length arrays: one zero coefficient
            cols, coefs = np.array([0]), np.array([0.0])
            indptr[-1] = 1
        bias = np.zeros(n, np.float32) if bias is None else bias.astype(np.float32)
        if scale is not None:
            bias = bias * scale + shift
        return cls(dictionary.reshape(k, -1).astype(np.float32), indptr, cols.astype(np.int32),
                   coefs.astype(np.float32), bias.astype(np.float32), kernel)

    def identity_into_dictionary(self) -> "PackedLookup":
        """For P = I (channel f's one entry is dictionary row f): the same layer with each
        coefficient moved into its dictionary row (``D' = diag(coefs) D``, coefficients 1), the
        form whose product the operator stores straight into the output (docs/design.md)."""
        n = len(self.indptr) - 1
        if (self.kernel != (1, 1) or self.dictionary.shape[0] != n or not np.array_equal(self.indptr, np.arange(n + 1))
                or not np.array_equal(self.indices, np.arange(n))):
            raise ValueError("identity_into_dictionary: P is not the identity")
        return dataclasses.replace(self, dictionary=self.dictionary * self.coefs[:, None],
                                   coefs=np.ones_like(self.coefs))

    def arrays(self, dictionary_layout: str = "km") -> dict:
        """The packed arrays by input name, in the operator's order, the dictionary in
        ``dictionary_layout`` (one of ``DICTIONARY_LAYOUTS``)."""
        if dictionary_layout not in DICTIONARY_LAYOUTS:
            raise ValueError(f"dictionary_layout must be one of {DICTIONARY_LAYOUTS}, got {dictionary_layout!r}")
        arrays = {name: getattr(self, name) for name in PACKED}
        if dictionary_layout == "mk":
            arrays["dictionary"] = np.ascontiguousarray(self.dictionary.T)
        return arrays

    def lookup(self) -> np.ndarray:
        """The dense P ``(n, k, kh, kw)`` these arrays hold (coefficients of repeated indices add)."""
        n, k = len(self.indptr) - 1, self.dictionary.shape[0]
        p = np.zeros((n, k * self.kernel[0] * self.kernel[1]), np.float32)
        rows = np.repeat(np.arange(n), np.diff(self.indptr))
        np.add.at(p, (rows, self.indices), self.coefs)
        return p.reshape((n, k) + self.kernel)

    @property
    def density(self) -> float:
        """Fraction of P's entries stored with a non-zero coefficient."""
        return float(np.count_nonzero(self.coefs)) / ((len(self.indptr) - 1) * self.dictionary.shape[0]
                                                      * self.kernel[0] * self.kernel[1])


def header_names(path: str = FORMAT_HEADER) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The input and attribute names of the C++ contract, read from its header."""
    with open(path) as f:
        text = f.read()

    def names(array: str) -> Tuple[str, ...]:
        body = re.search(array + r"\[\]\s*=\s*\{([^}]*)\}", text).group(1)
        return tuple(re.findall(r'"([a-z_]+)"', body))
    return names("kInputNames"), names("kAttributeNames")
