"""A .rec and .idx that do not belong together, a truncated .rec, labels outside the classes:
clear errors naming the file and the first bad record, before MXNet's reader (which crashes or
hangs on them) ever opens the files."""
import os
import shutil

import pytest
from conftest import PY, run

from lcnn_gluon import data, recordio


def copy_pair(prefix, rec_from, idx_from):
    shutil.copy(rec_from + ".rec", prefix + ".rec")
    shutil.copy(idx_from + ".idx", prefix + ".idx")
    return prefix + ".rec"


def reader_cli(rec, *extra):
    return run(PY, "-m", "lcnn_gluon.data", rec, "--dataset", "mnist", *extra, check=False, timeout=120)


def test_a_packed_pair_passes(mnist_rec):
    found = recordio.validate(mnist_rec + "_train.rec", mnist_rec + "_train.idx", num_classes=10)
    assert found.records == 4000 and (found.min_label, found.max_label) == (0, 9)


@pytest.mark.parametrize("cut", [640000, 4096, 100])
def test_truncated_rec(mnist_rec, tmp_path, cut):
    rec = str(tmp_path / "t.rec")
    with open(mnist_rec + "_train.rec", "rb") as src, open(rec, "wb") as dst:
        dst.write(src.read(cut))  # a 4-byte boundary, as a copy interrupted mid-file
    shutil.copy(mnist_rec + "_train.idx", tmp_path / "t.idx")
    with pytest.raises(ValueError, match=r"t\.idx: record \d+ at offset \d+ (is outside the \.rec|runs past)"):
        recordio.validate(rec, str(tmp_path / "t.idx"))
    proc = reader_cli(rec)
    assert proc.returncode == 2 and "t.idx: record" in proc.stdout and "Traceback" not in proc.stdout


@pytest.mark.parametrize("rec_split,idx_split", [("val", "train"), ("train", "val")])
def test_index_of_another_file(mnist_rec, tmp_path, rec_split, idx_split):
    rec = copy_pair(str(tmp_path / "mixed"), f"{mnist_rec}_{rec_split}", f"{mnist_rec}_{idx_split}")
    with pytest.raises(ValueError, match=r"mixed\.idx: record \d+ at offset \d+"):
        recordio.validate(rec, str(tmp_path / "mixed.idx"))
    proc = reader_cli(rec)
    assert proc.returncode == 2 and "is this the .idx of this .rec?" in proc.stdout


def test_malformed_index_lines(mnist_rec, tmp_path):
    rec = copy_pair(str(tmp_path / "m"), f"{mnist_rec}_val", f"{mnist_rec}_val")
    with open(tmp_path / "m.idx", "a") as f:
        f.write("7\tnot-a-number\n")
    with pytest.raises(ValueError, match=r"m\.idx: line 1001 is not 'key<TAB>offset'"):
        recordio.validate(rec, str(tmp_path / "m.idx"))
    (tmp_path / "m.idx").write_text("")
    with pytest.raises(ValueError, match="index is empty"):
        data.check_rec(rec, (1, 28, 28))


def test_labels_outside_the_classes_are_named(mnist_rec, tmp_path):
    with pytest.raises(ValueError, match=r"mnist_val\.rec: record \d+ has label [5-9], not a class in \[0, 5\)"):
        data.check_rec(mnist_rec + "_val.rec", (1, 28, 28), num_classes=5)
    proc = run(PY, "-m", "lcnn_gluon.train", "--network", "lenet", "--dataset", "mnist", "--num-classes", "5",
               "--data-train", mnist_rec + "_val.rec", "--num-epochs", "1", check=False)
    assert proc.returncode == 2 and "--data-train: " in proc.stdout and "(--num-classes 5)" in proc.stdout
    assert not os.path.exists("lenet-0001.params")


def test_large_records_are_read_one_by_one(tmp_path):
    """Records a page or more apart take the pread path: the same checks."""
    prefix = str(tmp_path / "big")
    with recordio.IndexedRecordWriter(prefix + ".rec", prefix + ".idx") as writer:
        for i in range(20):
            writer.write(i, recordio.pack_header(float(i % 4), i, bytes(6000)))
    assert recordio.validate(prefix + ".rec", prefix + ".idx", num_classes=4).records == 20
    with pytest.raises(ValueError, match=r"record \d+ has label 3, not a class in \[0, 3\)"):
        recordio.validate(prefix + ".rec", prefix + ".idx", num_classes=3)
    with open(prefix + ".rec", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".rec") - 4000)
    with pytest.raises(ValueError, match=r"record 19 at offset \d+ runs past the end"):
        recordio.validate(prefix + ".rec", prefix + ".idx")
