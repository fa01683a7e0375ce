"""MNIST idx files: read (raw or ``.gz``, validated) and write.

The idx format is ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian u32
sizes, then the values. MNIST uses type ``0x08`` (unsigned byte): images are
``(n, 28, 28)`` (magic 2051) and labels ``(n,)`` (magic 2049).
"""
from __future__ import annotations

import gzip
import os
import struct
from typing import Dict, Tuple

import numpy as np

from . import atomic

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
SPLITS = {"train": "train", "val": "t10k"}  # output split -> MNIST file stem


class IdxError(ValueError):
    """A malformed idx file; the message names the file."""


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def read_idx(path: str, expect_magic: int) -> np.ndarray:
    """Read an unsigned-byte idx file into a uint8 array of its stored shape."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip raises these on truncated archives
        raise IdxError(f"{path}: cannot read idx file ({e})") from e
    if len(data) < 4:
        raise IdxError(f"{path}: file is {len(data)} bytes, too short for an idx header")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != expect_magic:
        raise IdxError(f"{path}: magic number {magic:#010x}, expected {expect_magic:#010x} "
                       f"({'images' if expect_magic == IMAGES_MAGIC else 'labels'} file)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise IdxError(f"{path}: {len(data)} bytes, expected {expected} for shape {shape} "
                       f"({'truncated' if len(data) < expected else 'trailing data'})")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file (gzipped if ``path`` ends in ``.gz``), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    def write(tmp):
        with open(tmp, "wb") as raw:
            if path.endswith(".gz"):  # no name or time in the header: same input, same bytes
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
                    f.write(header + array.tobytes())
            else:
                raw.write(header + array.tobytes())
    atomic.write_atomically(path, write)


def _find(root: str, name: str) -> str:
    for candidate in (name, name + ".gz"):
        path = os.path.join(root, candidate)
        if os.path.isfile(path):
            return path
    raise IdxError(f"{root}: no {name} or {name}.gz")


def load_split(root: str, stem: str) -> Tuple[np.ndarray, np.ndarray]:
    """Load ``ROOT/{stem}-images-idx3-ubyte[.gz]`` and its labels; check they match.

    Returns images ``(n, 28, 28)`` uint8 and labels ``(n,)`` uint8.
    """
    img_path = _find(root, f"{stem}-images-idx3-ubyte")
    lbl_path = _find(root, f"{stem}-labels-idx1-ubyte")
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise IdxError(f"{img_path} has {images.shape[0]} images but {lbl_path} has "
                       f"{labels.shape[0]} labels")
    return images, labels


def load_mnist(root: str) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Both splits of an MNIST folder: ``{'train': (x, y), 'val': (x, y)}``."""
    if not os.path.isdir(root):
        raise IdxError(f"{root}: MNIST folder does not exist")
    return {split: load_split(root, stem) for split, stem in SPLITS.items()}
