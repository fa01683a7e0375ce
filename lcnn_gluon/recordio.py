"""MXNet's RecordIO format (``.rec`` + ``.idx``): a dependency-free writer, and a validator
that the training data pass through before MXNet's C++ reader sees them.

The packer writes records without importing ``mxnet`` (whose import alone takes
about 2 s), so this module re-implements dmlc-core's ``RecordIOWriter`` byte for
byte; the tests read every file it writes back through MXNet's own readers.

Format of one record: ``magic (u32) | lrec (u32) | payload | zero padding to 4``,
where ``lrec = cflag << 29 | length``. A payload that contains the magic number
at a 4-byte aligned offset is split there into parts (cflag 1 = first,
2 = middle, 3 = last) and the magic word itself is dropped, exactly as dmlc does.
"""
from __future__ import annotations

import dataclasses
import os
import struct
from typing import Optional, Sequence, Union

import numpy as np

from . import atomic

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "IfQQ"  # flag, label, id, id2: MXNet's IRHeader
Label = Union[float, Sequence[float], np.ndarray]


def pack_header(label: Label, record_id: int, payload: bytes) -> bytes:
    """Prefix ``payload`` with an MXNet ``IRHeader`` (as ``mx.recordio.pack``).

    A scalar label is stored in the header; a vector label (``--pack-label``) is
    stored as float32 values after it, with ``flag`` = its length.
    """
    if np.ndim(label) == 0:
        return struct.pack(_IR_FORMAT, 0, float(label), record_id, 0) + payload
    vec = np.asarray(label, dtype=np.float32).ravel()
    return struct.pack(_IR_FORMAT, vec.size, 0.0, record_id, 0) + vec.tobytes() + payload


def encode_record(payload: bytes) -> bytes:
    """Return ``payload`` framed as one RecordIO record (dmlc ``WriteRecord``)."""
    if len(payload) >= 1 << 29:
        raise ValueError(f"record of {len(payload)} bytes: RecordIO allows less than 2^29")
    parts = []
    start = 0
    pos = payload.find(_MAGIC_BYTES)
    while pos != -1:
        if pos % 4 == 0:
            cflag = 1 if start == 0 else 2
            parts.append(_MAGIC_BYTES + struct.pack("<I", cflag << 29 | (pos - start)))
            parts.append(payload[start:pos])
            start = pos + 4
        pos = payload.find(_MAGIC_BYTES, pos + 1)
    cflag = 3 if start else 0
    parts.append(_MAGIC_BYTES + struct.pack("<I", cflag << 29 | (len(payload) - start)))
    parts.append(payload[start:])
    parts.append(b"\0" * (-len(payload) % 4))
    return b"".join(parts)


class IndexedRecordWriter:
    """Writes ``PATH.rec`` and ``PATH.idx`` atomically.

    Records go to temporary files; ``commit()`` renames them into place (first
    removing a stale ``.idx``, then renaming the ``.rec``, the ``.idx`` last), so
    an interrupted run never leaves a pair that looks finished. Used as a context
    manager, an exception discards the temporary files.
    """

    def __init__(self, rec_path: str, idx_path: str):
        self.rec_path, self.idx_path = rec_path, idx_path
        self._rec_tmp, self._idx_tmp = atomic.temporary_name(rec_path), atomic.temporary_name(idx_path)
        self._rec = open(self._rec_tmp, "wb")
        self._idx = open(self._idx_tmp, "w")
        self.count = 0

    def write(self, key: int, record: bytes) -> None:
        """Append one packed record (header + payload) under index ``key``."""
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        self._rec.write(encode_record(record))
        self.count += 1

    def commit(self) -> None:
        for f in (self._rec, self._idx):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        if os.path.exists(self.idx_path):
            os.remove(self.idx_path)
        os.replace(self._rec_tmp, self.rec_path)
        os.replace(self._idx_tmp, self.idx_path)
        atomic.fsync_path(os.path.dirname(os.path.abspath(self.rec_path)))

    def discard(self) -> None:
        """Remove the temporary files, also when closing them fails again (a full disk)."""
        for f, path in ((self._rec, self._rec_tmp), (self._idx, self._idx_tmp)):
            try:
                f.close()
            except OSError:
                pass
            atomic.remove_quietly(path)

    def __enter__(self) -> "IndexedRecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()


# ---------------------------------------------------------------- reading side: validation
_LENGTH_MASK = (1 << 29) - 1
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24 bytes


@dataclasses.dataclass
class IndexCheck:
    """What :func:`validate` found: the number of records and the labels' range."""

    records: int
    min_label: float
    max_label: float


_POW10 = 10 ** np.arange(19, dtype=np.int64)


def _parse_index(text: bytes) -> Optional[np.ndarray]:
    """``(n, 2)`` int64 of well-formed ``key<TAB>offset`` lines, parsed with array operations
    (a Python loop over ImageNet's 1.28M lines takes seconds); None when any line is not."""
    buf = np.frombuffer(text, np.uint8)
    digit = (buf >= ord("0")) & (buf <= ord("9"))
    tab, newline = buf == ord("\t"), buf == ord("\n")
    if not (digit | tab | newline).all():
        return None
    starts = np.flatnonzero(digit & ~np.r_[False, digit[:-1]])
    ends = np.flatnonzero(digit & ~np.r_[digit[1:], False]) + 1
    line_of = np.cumsum(newline)[starts]  # newlines before each number: its line
    # two numbers per line, separated by one tab, each line ended by a newline (the last may not)
    lines = len(starts) // 2
    if (len(starts) % 2 or not lines or (ends - starts).max() > 18
            or not (line_of == np.repeat(np.arange(lines), 2)).all()
            or not tab[ends[0::2]].all() or not (starts[1::2] == ends[0::2] + 1).all()
            or newline.sum() - (lines - 1) not in (0, 1) or not newline[ends[1::2][:-1]].all()):
        return None
    # each digit times its power of ten, summed per number (exact in int64)
    position = np.flatnonzero(digit)  # the digits of each number, in order
    number = np.repeat(np.arange(len(starts)), ends - starts)
    value = (buf[position].astype(np.int64) - ord("0")) * _POW10[ends[number] - 1 - position]
    first_digit = np.r_[0, np.cumsum(ends - starts)[:-1]]
    return np.add.reduceat(value, first_digit).reshape(lines, 2)


def read_index(idx_path: str) -> np.ndarray:
    """``(n, 2)`` int64 array of ``(key, offset)`` from an ``.idx`` file (``key<TAB>offset``
    lines); ``ValueError`` naming the file and line when it is not one."""
    with open(idx_path, "rb") as f:
        text = f.read()
    table = _parse_index(text)
    if table is not None:
        return table
    lines = text.split(b"\n")
    if lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        fields = line.rstrip(b"\r").split(b"\t")
        if len(fields) != 2 or not all(f.isdigit() and len(f) <= 18 for f in fields):
            raise ValueError(f"{idx_path}: line {number} is not 'key<TAB>offset': {line[:60]!r}")
    if not lines:
        raise ValueError(f"{idx_path}: index is empty")
    return np.array([line.rstrip(b"\r").split(b"\t") for line in lines], dtype=np.int64)


_PAGE = 4096


def _read_at(path: str, offsets: np.ndarray, width: int, size: int) -> np.ndarray:
    """``(len(offsets), width)`` uint8: ``width`` bytes at each offset. Small records share
    pages: gathered from a memory map. Records a page or more apart: one ``pread`` each,
    cheaper than faulting a page of a map in per record (ImageNet: 2.5 s against 4-6 s)."""
    if not len(offsets):
        return np.zeros((0, width), np.uint8)
    if size // len(offsets) < _PAGE:
        return np.memmap(path, dtype=np.uint8, mode="r")[offsets[:, None] + np.arange(width)]
    fd = os.open(path, os.O_RDONLY)
    try:
        pread = os.pread
        raw = b"".join([pread(fd, width, o) for o in offsets.tolist()])
    finally:
        os.close(fd)
    return np.frombuffer(raw, np.uint8).reshape(len(offsets), width)


def validate(rec_path: str, idx_path: str, num_classes: Optional[int] = None) -> IndexCheck:
    """Check that ``idx_path`` indexes ``rec_path`` before MXNet's C++ reader sees them (it
    crashes or hangs on a truncated ``.rec`` or a foreign ``.idx``): every offset inside the
    file, a record header at each, each record inside the file and before the next one; and,
    with ``num_classes``, every label an integer in ``[0, num_classes)``.

    Reads 32 bytes per record (vectorised over a memory map); ``ValueError`` names the file
    and the first bad record.
    """
    table = read_index(idx_path)
    size = os.path.getsize(rec_path)
    keys, offsets = table[:, 0], table[:, 1]
    order = np.argsort(offsets, kind="stable")

    def bad(mask: np.ndarray, what: str) -> None:
        if mask.any():
            i = int(order[np.argmax(mask[order])])  # the first bad record in file order
            raise ValueError(f"{idx_path}: record {keys[i]} at offset {offsets[i]} {what} "
                             f"({rec_path}: {size} bytes; is this the .idx of this .rec?)")

    bad((offsets < 0) | (offsets + 8 + _IR_SIZE > size), "is outside the .rec or too short")
    head = _read_at(rec_path, offsets, 8 + _IR_SIZE, size).view("<u4")  # magic, lrec, IRHeader
    bad(head[:, 0] != MAGIC, "has no record header")
    cflag, length = head[:, 1] >> 29, (head[:, 1] & _LENGTH_MASK).astype(np.int64)
    bad((cflag != 0) & (cflag != 1), "is the middle or end of a split record, not a record")
    end = offsets + 8 + length + (-length % 4)
    next_start = np.full(len(offsets), size, np.int64)
    next_start[order[:-1]] = offsets[order[1:]]
    bad(end > next_start, "runs past the end of the .rec or into the next record")
    bad(length < _IR_SIZE, "is too short for an image record header")
    flag, label = head[:, 2], head[:, 3].view("<f4")
    if (flag > 0).any():  # vector labels: the first is stored right after the header
        label = label.copy()
        label[flag > 0] = _read_at(rec_path, offsets[flag > 0] + 8 + _IR_SIZE, 4, size).view("<f4")[:, 0]
    if num_classes is not None:
        outside = ~np.isfinite(label) | (label < 0) | (label >= num_classes) | (label != np.floor(label))
        if outside.any():
            i = int(order[np.argmax(outside[order])])
            raise ValueError(f"{rec_path}: record {keys[i]} has label {label[i]:g}, not a class in "
                             f"[0, {num_classes}) (--num-classes {num_classes})")
    return IndexCheck(len(keys), float(label.min()), float(label.max()))
