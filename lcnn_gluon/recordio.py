"""A dependency-free writer for MXNet's RecordIO format (``.rec`` + ``.idx``).

The packer writes records without importing ``mxnet`` (whose import alone takes
about 2 s), so this module re-implements dmlc-core's ``RecordIOWriter`` byte for
byte; the tests read every file it writes back through MXNet's own readers.

Format of one record: ``magic (u32) | lrec (u32) | payload | zero padding to 4``,
where ``lrec = cflag << 29 | length``. A payload that contains the magic number
at a 4-byte aligned offset is split there into parts (cflag 1 = first,
2 = middle, 3 = last) and the magic word itself is dropped, exactly as dmlc does.
"""
from __future__ import annotations

import os
import struct
from typing import Sequence, Union

import numpy as np

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
        suffix = f".tmp-{os.getpid()}"
        self._rec_tmp, self._idx_tmp = rec_path + suffix, idx_path + suffix
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

    def discard(self) -> None:
        for f, path in ((self._rec, self._rec_tmp), (self._idx, self._idx_tmp)):
            f.close()
            if os.path.exists(path):
                os.remove(path)

    def __enter__(self) -> "IndexedRecordWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
