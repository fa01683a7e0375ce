"""MNIST: the bundled sample as idx files, lossless packing, and bad idx files."""
import gzip
import os
import shutil

import mxnet as mx
import numpy as np
import pytest
from conftest import PY, ROOT, im2rec, run

from lcnn_gluon.mnist import IMAGES_MAGIC, LABELS_MAGIC, load_split, read_idx


def test_sample_is_stratified_and_deterministic(mnist_sample, tmp_path):
    train_x, train_y = load_split(mnist_sample, "train")
    test_x, test_y = load_split(mnist_sample, "t10k")
    assert train_x.shape == (4000, 28, 28) and test_x.shape == (1000, 28, 28)
    assert np.bincount(train_y).tolist() == [400] * 10
    assert np.bincount(test_y).tolist() == [100] * 10
    assert 20 < train_x.mean() < 60  # real digits: mostly black background
    run(PY, os.path.join(ROOT, "data", "prepare_mnist_sample.py"), "--out", tmp_path)
    for name in sorted(os.listdir(mnist_sample)):
        with open(os.path.join(mnist_sample, name), "rb") as a, open(tmp_path / name, "rb") as b:
            assert a.read() == b.read(), name


@pytest.mark.parametrize("split,stem", [("train", "train"), ("val", "t10k")])
def test_pixels_and_labels_round_trip_exactly(mnist_sample, mnist_rec, split, stem):
    images, labels = load_split(mnist_sample, stem)
    reader = mx.recordio.MXIndexedRecordIO(f"{mnist_rec}_{split}.idx", f"{mnist_rec}_{split}.rec", "r")
    assert sorted(reader.keys) == list(range(len(images)))
    assert reader.keys != sorted(reader.keys)  # shuffled
    for key in reader.keys:
        header, img = mx.recordio.unpack_img(reader.read_idx(key), iscolor=0)
        assert header.id == key and header.label == labels[key]
        np.testing.assert_array_equal(img, images[key])


def test_image_record_iter_reads_mnist(mnist_rec):
    it = mx.io.ImageRecordIter(path_imgrec=mnist_rec + "_val.rec", path_imgidx=mnist_rec + "_val.idx",
                               data_shape=(1, 28, 28), batch_size=100)
    # the iterator reuses its output buffers: copy each batch before the next
    shapes, labels = zip(*[(b.data[0].shape, b.label[0].asnumpy()) for b in it])
    assert shapes == ((100, 1, 28, 28),) * 10
    labels = np.concatenate(labels).astype(int)
    assert np.bincount(labels).tolist() == [100] * 10


def corrupt(root, name, how):
    path = os.path.join(root, name)
    with gzip.open(path, "rb") as f:
        data = f.read()
    if how == "truncate":
        data = data[: len(data) - 100]
    elif how == "magic":
        data = (IMAGES_MAGIC if "labels" in name else LABELS_MAGIC).to_bytes(4, "big") + data[4:]
    elif how == "count":
        data = data[:4] + (999).to_bytes(4, "big") + data[8:8 + 999]
    os.remove(path)
    with open(path[:-3], "wb") as f:  # raw (not gzipped) this time
        f.write(data)


@pytest.mark.parametrize("name,how,message", [
    ("train-images-idx3-ubyte.gz", "truncate", "truncated"),
    ("t10k-labels-idx1-ubyte.gz", "magic", "magic number"),
    ("train-labels-idx1-ubyte.gz", "count", "has 4000 images but"),
])
def test_bad_idx_files_give_clear_errors(mnist_sample, tmp_path, name, how, message):
    root = tmp_path / "mnist"
    shutil.copytree(mnist_sample, root)
    corrupt(str(root), name, how)
    out = tmp_path / "out"
    out.mkdir()
    proc = im2rec("--mnist", out / "m", root, check=False)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout
    assert name[:-3] in proc.stdout  # names the file
    assert "Traceback" not in proc.stdout
    assert os.listdir(out) == []  # nothing half-written


def test_truncated_gzip_names_the_file(mnist_sample, tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with open(os.path.join(mnist_sample, path.name), "rb") as f:
        path.write_bytes(f.read()[:-20])
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz"):
        read_idx(str(path), LABELS_MAGIC)
