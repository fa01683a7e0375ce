"""Readers: the paper's augmentation, centre-crop validation, sharding, and clear errors."""
import os

import cv2
import mxnet as mx
import numpy as np
import pytest
from conftest import PY, im2rec, run, write_images

from lcnn_gluon import data


def collect(it):
    """All real samples of one pass: (images NCHW float32, labels)."""
    xs, ys = [], []
    for b in it:
        real = b.data[0].shape[0] - b.pad
        xs.append(b.data[0].asnumpy()[:real])
        ys.append(b.label[0].asnumpy()[:real])
    return np.concatenate(xs), np.concatenate(ys)


@pytest.fixture(scope="module")
def packed(image_folder, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("packed") / "imgs")
    im2rec("--list", "--recursive", prefix, image_folder)
    im2rec(prefix, image_folder)
    return prefix


def test_val_iter_is_resize_then_centre_crop(packed):
    x, y = collect(data.val_iter(packed + ".rec", 4, "imagenet"))
    assert x.shape == (15, 3, 224, 224) and len(y) == 15
    reader = mx.recordio.MXIndexedRecordIO(packed + ".idx", packed + ".rec", "r")
    header, bgr = mx.recordio.unpack_img(reader.read_idx(reader.keys[0]))
    h, w = bgr.shape[:2]
    size = (256, h * 256 // w) if h > w else (w * 256 // h, 256)  # (width, height) for cv2
    img = cv2.resize(bgr, size)[:, :, ::-1].astype(np.float32)
    top, left = (img.shape[0] - 224) // 2, (img.shape[1] - 224) // 2
    ref = (img[top:top + 224, left:left + 224] - data.PRESETS["imagenet"].mean) / data.PRESETS["imagenet"].std
    assert y[0] == header.label
    assert np.abs(x[0].transpose(1, 2, 0) - ref).mean() < 0.02  # same pixels up to resize rounding


def test_train_iter_flips_imagenet_but_not_mnist(tmp_path):
    root = tmp_path / "asym" / "class0"
    root.mkdir(parents=True)
    img = np.zeros((256, 256, 3), np.uint8)
    img[:, 128:] = 255  # dark left half, bright right half
    for i in range(16):
        cv2.imwrite(str(root / f"{i}.png"), img)
    prefix = str(tmp_path / "asym-rec")
    im2rec("--list", prefix, root)
    im2rec("--encoding", ".png", prefix, root)
    x, _ = collect(data.train_iter(prefix + ".rec", 8, "imagenet", data_shape=(3, 256, 256), seed=3))
    left_bright = x[:, 0, 128, 0] > 0
    assert 0 < left_bright.sum() < 16  # some flipped, some not


def test_mnist_train_iter_does_not_flip_or_crop(mnist_rec):
    from lcnn_gluon.mnist import load_split  # noqa: F401  (same digits, compared as pixel sets)
    preset = data.PRESETS["mnist"]
    x, _ = collect(data.train_iter(mnist_rec + "_val.rec", 128, "mnist", seed=1))
    pixels = np.rint(x[:, 0] * preset.std[0] + preset.mean[0]).astype(np.uint8)
    ref, _ = collect(data.val_iter(mnist_rec + "_val.rec", 128, "mnist"))
    ref = np.rint(ref[:, 0] * preset.std[0] + preset.mean[0]).astype(np.uint8)
    assert {p.tobytes() for p in pixels} == {p.tobytes() for p in ref}


def test_seed_fixes_order_and_augmentation(packed):
    a = collect(data.train_iter(packed + ".rec", 4, "imagenet", seed=5))
    b = collect(data.train_iter(packed + ".rec", 4, "imagenet", seed=5))
    c = collect(data.train_iter(packed + ".rec", 4, "imagenet", seed=6))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_shards_split_the_data(mnist_rec):
    parts = [collect(data.val_iter(mnist_rec + "_val.rec", 64, "mnist", num_parts=2, part_index=i))
             for i in range(2)]
    assert len(parts[0][1]) + len(parts[1][1]) == 1000
    both = np.concatenate([parts[0][0], parts[1][0]]).reshape(1000, -1)
    assert len({row.tobytes() for row in both}) > 990  # disjoint halves (a few digits may repeat)


def test_check_rec_errors(packed, mnist_rec, tmp_path):
    with pytest.raises(ValueError, match=r"1 channel\(s\) but --image-shape asks for 3"):
        data.check_rec(mnist_rec + "_val.rec", (3, 28, 28))
    with pytest.raises(ValueError, match="smaller than --image-shape 32x32"):
        data.check_rec(mnist_rec + "_val.rec", (1, 32, 32))
    assert data.check_rec(packed + ".rec", (3, 224, 224), resize=256) == 15
    rec = tmp_path / "lonely.rec"
    with open(packed + ".rec", "rb") as src:
        rec.write_bytes(src.read())
    with pytest.raises(ValueError, match="lonely.idx: no such file"):
        data.check_rec(str(rec), (3, 224, 224))
    proc = run(PY, "-m", "lcnn_gluon.data", rec, check=False)
    assert proc.returncode == 2 and "lonely.idx: no such file" in proc.stdout
    assert "Traceback" not in proc.stdout


def test_unknown_dataset_is_named():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        data.get_preset("cifar")


def test_small_images_packed_then_read_by_train_iter(tmp_path):
    root = write_images(tmp_path / "tiny", [2, 2], size_range=(20, 30))
    prefix = str(tmp_path / "tiny")
    im2rec("--list", "--recursive", prefix, root)
    im2rec(prefix, root)
    x, y = collect(data.train_iter(prefix + ".rec", 2, "imagenet"))  # upscaled to 256, cropped
    assert x.shape == (4, 3, 224, 224) and sorted(y.tolist()) == [0, 0, 1, 1]
    assert os.path.isfile(prefix + ".classes.txt")


def test_every_epoch_is_exact_and_pad_is_true(mnist_rec):
    it = data.val_iter(mnist_rec + "_val.rec", 96, "mnist")  # 1000 = 10 * 96 + 40
    first = collect(it)
    it.reset()
    second = collect(it)
    assert len(first[1]) == len(second[1]) == 1000
    np.testing.assert_array_equal(first[0], second[0])
    assert np.bincount(first[1].astype(int)).tolist() == [100] * 10


def test_resumed_epoch_equals_uninterrupted_epoch(mnist_rec):
    run_from_start = data.train_iter(mnist_rec + "_val.rec", 64, "mnist", seed=9)
    epochs = []
    for _ in range(3):
        epochs.append(collect(run_from_start)[1])
        run_from_start.reset()
    resumed = data.train_iter(mnist_rec + "_val.rec", 64, "mnist", seed=9, epoch=2)
    np.testing.assert_array_equal(collect(resumed)[1], epochs[2])
    assert not np.array_equal(epochs[1], epochs[2])


def test_equal_steps_on_unequal_shards(mnist_rec):
    # 1000 records in 3 parts: 334, 334, 332; every worker must take the same number of steps
    its = [data.train_iter(mnist_rec + "_val.rec", 100, "mnist", num_parts=3, part_index=i,
                           num_batches=5) for i in range(3)]
    assert [it.shard for it in its] == [334, 334, 332]
    for it in its:
        batches = [(b.data[0].shape[0], b.pad) for b in it]
        assert len(batches) == 5 and all(n == 100 for n, _ in batches)
        assert batches[3][1] == 400 - it.shard  # only the tail of the shard's last batch is padding
        assert batches[4][1] == 0  # the fifth step comes from a reshuffled pass: real samples

