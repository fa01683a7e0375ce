"""tools/im2rec.py on image folders: compatibility with MXNet's tool and readers, bad input."""
import os
import shutil
import signal
import subprocess
import time

import cv2
import mxnet as mx
import numpy as np
import pytest
from conftest import PY, ROOT, im2rec, mxnet_im2rec_path, run, write_images


def read_all(prefix):
    """{record id: (label, HxWxC image)} through MXNet's indexed reader."""
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    out = {}
    for key in reader.keys:
        header, img = mx.recordio.unpack_img(reader.read_idx(key))
        out[key] = (header.label, header.id, img)
    reader.close()
    return out


def test_list_is_identical_to_mxnet(image_folder, tmp_path):
    ours, theirs = str(tmp_path / "ours"), str(tmp_path / "theirs")
    im2rec("--list", "--recursive", "--train-ratio", "0.6", "--test-ratio", "0.2", ours, image_folder)
    run(PY, mxnet_im2rec_path(), "--list", "--recursive", "--train-ratio", "0.6",
        "--test-ratio", "0.2", theirs, image_folder)
    for part in ("_train.lst", "_val.lst", "_test.lst"):
        with open(ours + part) as a, open(theirs + part) as b:
            assert a.read() == b.read(), part
    with open(ours + ".classes.txt") as f:
        assert f.read() == "0\tclass0\n1\tclass1\n2\tclass2\n"


def test_packed_folder_reads_through_mxnet_readers(image_folder, tmp_path):
    prefix = str(tmp_path / "imgs")
    im2rec("--list", "--recursive", prefix, image_folder)
    im2rec("--resize", "48", "--num-thread", "2", prefix, image_folder)
    with open(prefix + ".lst") as f:
        lst = [line.rstrip("\n").split("\t") for line in f]
    assert [int(x[0]) for x in lst] != sorted(int(x[0]) for x in lst)  # shuffled by default
    records = read_all(prefix)
    assert list(records) == [int(x[0]) for x in lst]  # list order kept
    for index, label, relpath in lst:
        rec_label, rec_id, img = records[int(index)]
        assert (rec_label, rec_id) == (float(label), int(index))
        h, w = cv2.imread(os.path.join(image_folder, relpath)).shape[:2]
        expect = (48, w * 48 // h) if h <= w else (h * 48 // w, 48)
        assert img.shape == expect + (3,)

    dataset = mx.gluon.data.vision.ImageRecordDataset(prefix + ".rec")
    assert len(dataset) == 15
    img, label = dataset[0]
    assert img.shape[2] == 3 and min(img.shape[:2]) == 48 and label == records[int(lst[0][0])][0]

    it = mx.io.ImageRecordIter(path_imgrec=prefix + ".rec", path_imgidx=prefix + ".idx",
                               data_shape=(3, 48, 48), batch_size=5)
    labels = np.concatenate([b.label[0].asnumpy() for b in it])
    assert sorted(labels.tolist()) == [0.0] * 5 + [1.0] * 4 + [2.0] * 6


def test_mxnet_list_packs_with_our_tool(image_folder, tmp_path):
    prefix = str(tmp_path / "mxlist")
    run(PY, mxnet_im2rec_path(), "--list", "--recursive", prefix, image_folder)
    im2rec("--quality", "90", prefix, image_folder)
    records = read_all(prefix)
    assert len(records) == 15
    assert sorted(r[0] for r in records.values()) == [0.0] * 5 + [1.0] * 4 + [2.0] * 6


def test_pack_label_and_pass_through(image_folder, tmp_path):
    prefix = str(tmp_path / "multi")
    src = os.path.join(image_folder, "class0", "img000.jpg")
    with open(prefix + ".lst", "w") as f:
        f.write(f"7\t1.5\t2.0\t3.0\t{os.path.relpath(src, image_folder)}\n")
    im2rec("--pack-label", "--pass-through", prefix, image_folder)
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    header, payload = mx.recordio.unpack(reader.read_idx(7))
    assert header.flag == 3 and header.label.tolist() == [1.5, 2.0, 3.0]
    with open(src, "rb") as f:
        assert payload == f.read()


def test_grayscale_and_png(image_folder, tmp_path):
    prefix = str(tmp_path / "gray")
    im2rec("--list", "--recursive", prefix, image_folder)
    im2rec("--color", "0", "--encoding", ".png", prefix, image_folder)
    reader = mx.recordio.MXIndexedRecordIO(prefix + ".idx", prefix + ".rec", "r")
    _, payload = mx.recordio.unpack(reader.read_idx(reader.keys[0]))
    assert payload[:4] == b"\x89PNG"
    assert cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_UNCHANGED).ndim == 2


@pytest.mark.parametrize("threads", ["1", "2"])
def test_bad_images_are_skipped_and_named(tmp_path, threads):
    root = write_images(tmp_path / "imgs", [3, 3])
    bad = {"corrupt.jpg": None, "empty.jpg": b"", "text.jpg": b"this is not an image\n"}
    with open(os.path.join(root, "class0", "img000.jpg"), "rb") as f:
        good = f.read()
    bad["corrupt.jpg"] = good[:200] + bytes(64) + good[264:len(good) // 2]
    for name, data in bad.items():
        with open(os.path.join(root, "class1", name), "wb") as f:
            f.write(data)
    prefix = str(tmp_path / "bad")
    im2rec("--list", "--recursive", prefix, root)
    proc = im2rec("--num-thread", threads, prefix, root)
    for name in bad:
        assert os.path.join(root, "class1", name) in proc.stdout, proc.stdout
    assert "3 unreadable images were skipped" in proc.stdout
    assert len(read_all(prefix)) == 6


def test_empty_class_folder_warns_and_keeps_mxnet_labels(tmp_path, image_folder):
    root = tmp_path / "imgs"
    shutil.copytree(image_folder, root)
    os.makedirs(root / "class1b_empty")
    proc = im2rec("--list", "--recursive", "--no-shuffle", str(tmp_path / "ours"), root)
    assert "class1b_empty holds no images" in proc.stdout
    run(PY, mxnet_im2rec_path(), "--list", "--recursive", "--no-shuffle", tmp_path / "theirs", root)
    with open(tmp_path / "ours.lst") as a, open(tmp_path / "theirs.lst") as b:
        assert a.read() == b.read()


def test_missing_root_and_missing_list(tmp_path):
    proc = im2rec("--list", "--recursive", tmp_path / "x", tmp_path / "nowhere", check=False)
    assert proc.returncode == 2 and "nowhere" in proc.stdout and "does not exist" in proc.stdout
    proc = im2rec(tmp_path / "nolist", tmp_path, check=False)
    assert proc.returncode == 2 and "--list first" in proc.stdout
    assert os.listdir(tmp_path) == []


def test_bad_flag_values_name_the_flag(tmp_path):
    proc = im2rec("--quality", "200", tmp_path / "x", tmp_path, check=False)
    assert proc.returncode == 2 and "--quality 200" in proc.stdout
    proc = im2rec("--train-ratio", "0", "--list", tmp_path / "x", tmp_path, check=False)
    assert proc.returncode == 2 and "--train-ratio" in proc.stdout


def test_interrupted_run_leaves_no_finished_looking_pair(tmp_path):
    root = write_images(tmp_path / "imgs", [300], size_range=(300, 400))
    prefix = str(tmp_path / "big")
    im2rec("--list", prefix, os.path.join(root, "class0"))
    for sig in (signal.SIGINT, signal.SIGKILL):
        # SIGINT at its default in the child, as in a terminal: a test run started in the
        # background of a script inherits SIGINT ignored, and Python then never raises
        # KeyboardInterrupt
        proc = subprocess.Popen([PY, os.path.join(ROOT, "tools", "im2rec.py"), "--num-thread", "1",
                                 "--resize", "256", prefix, os.path.join(root, "class0")],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 30
        while not any(".rec.tmp-" in n for n in os.listdir(tmp_path)) and time.time() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        names = os.listdir(tmp_path)
        assert "big.rec" not in names and "big.idx" not in names, (sig, names)
        if sig == signal.SIGINT:  # a clean interrupt also removes its temporary files
            assert not any(".tmp-" in n for n in names), names
