"""tools/im2rec.py on hostile input: exit status 2 naming the input, nothing half-written, a good
pair never replaced by an empty one, no memory blow-up on a lying image header."""
import os
import resource
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest
import simplejpeg
from conftest import PY, ROOT, im2rec, write_images

from lcnn_gluon import pack


@pytest.fixture
def packed_pair(tmp_path):
    """A folder of 6 images, packed: (prefix, root, bytes of the good .rec)."""
    root = write_images(tmp_path / "imgs", [3, 3])
    prefix = str(tmp_path / "out" / "p")
    os.makedirs(tmp_path / "out")
    im2rec("--list", "--recursive", prefix, root)
    im2rec(prefix, root)
    with open(prefix + ".rec", "rb") as f:
        return prefix, root, f.read()


def leftovers(folder):
    return [n for n in os.listdir(folder) if ".tmp-" in n]


def assert_pair_kept(prefix, good):
    with open(prefix + ".rec", "rb") as f:
        assert f.read() == good
    assert os.path.getsize(prefix + ".idx") > 0 and not leftovers(os.path.dirname(prefix))


def test_a_header_claiming_a_huge_image_is_skipped_before_decoding(tmp_path):
    root = write_images(tmp_path / "imgs", [2])
    small = simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), quality=90)
    sof = small.index(b"\xff\xc0")  # baseline frame header: height, width after 5 bytes
    huge = small[:sof + 5] + (60000).to_bytes(2, "big") * 2 + small[sof + 9:]
    with open(os.path.join(root, "class0", "bomb.jpg"), "wb") as f:
        f.write(huge)
    assert pack.header_size(huge) == (60000, 60000) and len(huge) < 2000
    prefix = str(tmp_path / "bomb")
    im2rec("--list", prefix, os.path.join(root, "class0"))
    limit = 1 << 30  # 1 GB of address space beyond the interpreter: decoding would need 10 GB
    proc = subprocess.run([PY, os.path.join(ROOT, "tools", "im2rec.py"), "--num-thread", "1", prefix,
                           os.path.join(root, "class0")], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_DATA, (limit * 3, limit * 3)))
    assert proc.returncode == 0, proc.stdout
    assert "bomb.jpg: header claims 60000x60000 pixels, above the limit of 268435456" in proc.stdout


@pytest.mark.parametrize("how", ["wrong root", "huge resize"])
def test_nothing_packed_is_an_error_and_keeps_the_good_pair(packed_pair, tmp_path, how):
    prefix, root, good = packed_pair
    args = ([prefix, tmp_path / "nowhere-else"] if how == "wrong root" else
            ["--resize", "100000", prefix, root])
    if how == "wrong root":
        os.makedirs(tmp_path / "nowhere-else")
    proc = im2rec(*args, check=False)
    assert proc.returncode == 2 and "none of the 6 images could be packed" in proc.stdout, proc.stdout
    assert_pair_kept(prefix, good)


@pytest.mark.parametrize("line,message", [
    ("-5\t0.000000\tclass0/img000.jpg\n", "index -5 is outside [0, 2^64)"),
    (f"{2 ** 64}\t0.000000\tclass0/img000.jpg\n", "is outside [0, 2^64)"),
    (b"0\t0.000000\tclass0/\xff\xfe.jpg\n", "not UTF-8 text"),
])
def test_bad_list_lines_are_named(packed_pair, line, message):
    prefix, root, good = packed_pair
    with open(prefix + ".lst", "ab") as f:
        f.write(line if isinstance(line, bytes) else line.encode())
    proc = im2rec(prefix, root, check=False)
    assert proc.returncode == 2 and f"{prefix}.lst:7" in proc.stdout and message in proc.stdout
    assert "Traceback" not in proc.stdout
    assert_pair_kept(prefix, good)


@pytest.mark.parametrize("name", [b"bad\xff.jpg", b"with\ttab.jpg", b"with\nnewline.jpg"])
def test_file_names_a_list_cannot_hold(tmp_path, name):
    root = write_images(tmp_path / "imgs", [2])
    img = cv2.imread(os.path.join(root, "class0", "img000.jpg"))
    cv2.imwrite(os.path.join(root, "class0", "x.jpg"), img)
    os.rename(os.path.join(root, "class0", "x.jpg").encode(), os.path.join(root, "class0").encode() + b"/" + name)
    proc = im2rec("--list", "--recursive", tmp_path / "l", root, check=False)
    assert proc.returncode == 2 and "rename it" in proc.stdout and "Traceback" not in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["imgs"]


def test_chunks_that_leave_a_list_empty(tmp_path):
    root = write_images(tmp_path / "imgs", [4])
    proc = im2rec("--list", "--chunks", "4", "--train-ratio", ".9", tmp_path / "c",
                  os.path.join(root, "class0"), check=False)
    assert proc.returncode == 2 and "c_0_train.lst would be empty" in proc.stdout
    assert sorted(os.listdir(tmp_path)) == ["imgs"]


def test_a_full_disk_leaves_no_temporary_files(packed_pair):
    """Writes fail as on a full disk (a file size limit: EFBIG); the cleanup must not fail again."""
    prefix, root, good = packed_pair

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(good) // 2, len(good) // 2))
    proc = subprocess.run([PY, os.path.join(ROOT, "tools", "im2rec.py"), "--num-thread", "1", prefix, root],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=120, preexec_fn=small_files)
    assert proc.returncode == 2 and "File too large" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stdout
    assert_pair_kept(prefix, good)


def _packing_with_two_workers(tmp_path):
    """im2rec started on 400 large images (``tmp_path/t``) with two encoding processes."""
    root = write_images(tmp_path / "imgs", [400], size_range=(600, 800))
    prefix = str(tmp_path / "t")
    im2rec("--list", prefix, os.path.join(root, "class0"))
    return subprocess.Popen([PY, os.path.join(ROOT, "tools", "im2rec.py"), "--num-thread", "2",
                             "--resize", "256", prefix, os.path.join(root, "class0")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _assert_nothing_left(tmp_path, out: str) -> None:
    assert "Traceback" not in out
    assert not leftovers(tmp_path) and "t.rec" not in os.listdir(tmp_path)


@pytest.mark.parametrize("delay", [0.0, 0.1])  # 0: as the workers are forked
def test_sigterm_is_like_ctrl_c(tmp_path, delay):
    proc = _packing_with_two_workers(tmp_path)
    deadline = time.time() + 30
    while not leftovers(tmp_path) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)  # the workers are starting, or encoding
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in out, out
    _assert_nothing_left(tmp_path, out)


def test_a_worker_that_dies_is_an_error_that_leaves_nothing(tmp_path):
    proc = _packing_with_two_workers(tmp_path)
    deadline, workers = time.time() + 30, []
    while len(workers) < 2 and time.time() < deadline:  # the encoding processes, once both run
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        time.sleep(0.01)
    os.kill(int(workers[0]), signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "process died" in out, out
    _assert_nothing_left(tmp_path, out)
