"""Our dependency-free RecordIO writer against MXNet's own (dmlc-core) writer and reader."""
import os
import struct

import mxnet as mx
import numpy as np
import pytest

from lcnn_gluon.recordio import MAGIC, IndexedRecordWriter, encode_record, pack_header

MAGIC_BYTES = struct.pack("<I", MAGIC)


def payloads():
    rng = np.random.RandomState(0)
    out = [b"", b"a", b"abcd", b"abcde", rng.bytes(1001)]
    # the magic word at aligned and unaligned offsets, first, last, twice in a row
    out += [MAGIC_BYTES, MAGIC_BYTES + b"xyz", b"1234" + MAGIC_BYTES + b"tail!",
            b"12" + MAGIC_BYTES + b"34", b"abcd" + MAGIC_BYTES + MAGIC_BYTES + b"ef",
            b"abcd" + MAGIC_BYTES, rng.bytes(400) + MAGIC_BYTES + rng.bytes(37)]
    return out


def test_bytes_equal_mxnet_writer(tmp_path):
    path = str(tmp_path / "mx.rec")
    writer = mx.recordio.MXRecordIO(path, "w")
    for p in payloads():
        writer.write(p)
    writer.close()
    with open(path, "rb") as f:
        assert f.read() == b"".join(encode_record(p) for p in payloads())


def test_indexed_writer_reads_back_with_mxnet(tmp_path):
    rec, idx = str(tmp_path / "a.rec"), str(tmp_path / "a.idx")
    with IndexedRecordWriter(rec, idx) as w:
        for i, p in enumerate(payloads()):
            w.write(100 + i, pack_header(float(i), 100 + i, p))
    reader = mx.recordio.MXIndexedRecordIO(idx, rec, "r")
    assert reader.keys == [100 + i for i in range(len(payloads()))]
    for i, p in enumerate(payloads()):
        header, data = mx.recordio.unpack(reader.read_idx(100 + i))
        assert (header.label, header.id, data) == (float(i), 100 + i, p)
    assert sorted(os.listdir(tmp_path)) == ["a.idx", "a.rec"]  # no temporary file left


def test_vector_label_header_matches_mxnet_pack():
    ours = pack_header([1.0, 2.5, 3.0], 7, b"img")
    theirs = mx.recordio.pack(mx.recordio.IRHeader(0, [1.0, 2.5, 3.0], 7, 0), b"img")
    assert ours == theirs


def test_failed_write_leaves_nothing(tmp_path):
    rec, idx = str(tmp_path / "b.rec"), str(tmp_path / "b.idx")
    with pytest.raises(RuntimeError):
        with IndexedRecordWriter(rec, idx) as w:
            w.write(0, b"x" * 10)
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
