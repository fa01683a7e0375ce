"""Shared fixtures: small real data made by the tests themselves (nothing is downloaded)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def host_has(flag: str) -> bool:
    """Whether this machine's CPU has a /proc/cpuinfo flag (the real CPU, not LCNN_CPU_FLAGS)."""
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and flag in line.split() for line in f)


# The operator's kernel sets this host can run (LCNN_ISA values, operators/library_init.cc):
# AVX-512 where the CPU has it; avx2pair runs the 16-lane kernels' logic on any AVX2 host.
KERNEL_SETS = ["avx2", "avx2pair"] + (["avx512"] if host_has("avx512f") else [])
DEFAULT_KERNEL_SET = "avx512" if host_has("avx512f") else "avx2"


def run(*args, check=True, timeout=600, env=None, **kw) -> subprocess.CompletedProcess:
    """Run a command from the repository root; return its result (stdout+stderr in .stdout)."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([str(a) for a in args], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, env=full_env, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}:\n{proc.stdout}")
    return proc


def im2rec(*args, **kw) -> subprocess.CompletedProcess:
    return run(PY, os.path.join(ROOT, "tools", "im2rec.py"), *args, **kw)


def mxnet_im2rec_path() -> str:
    import mxnet

    return os.path.join(os.path.dirname(mxnet.__file__), "tools", "im2rec.py")


def write_images(root, counts, seed=0, ext=".jpg", size_range=(40, 90)):
    """Write smooth random colour images: ``counts[c]`` images in ``root/class{c}``."""
    rng = np.random.RandomState(seed)
    for c, n in enumerate(counts):
        folder = os.path.join(root, f"class{c}")
        os.makedirs(folder, exist_ok=True)
        for i in range(n):
            h, w = rng.randint(*size_range, size=2)
            small = rng.randint(0, 256, size=(4, 4, 3)).astype(np.uint8)
            img = cv2.resize(small, (int(w), int(h)), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(os.path.join(folder, f"img{i:03d}{ext}"), img)
    return str(root)


@pytest.fixture(scope="session")
def lcnn_ops():
    """The compiled operator library, loaded into this process (`make test` builds it)."""
    from lcnn_gluon import ops

    return ops.load()


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """3 classes of 5, 4 and 6 small JPEGs of random sizes (40-89 px)."""
    return write_images(tmp_path_factory.mktemp("images"), [5, 4, 6])


@pytest.fixture(scope="session")
def mnist_sample(tmp_path_factory):
    """The 5,000-digit sample as idx .gz files, written by data/prepare_mnist_sample.py."""
    out = tmp_path_factory.mktemp("mnist-sample")
    run(PY, os.path.join(ROOT, "data", "prepare_mnist_sample.py"), "--out", out)
    return str(out)


@pytest.fixture(scope="session")
def mnist_rec(mnist_sample, tmp_path_factory):
    """Prefix of the packed sample: ``PREFIX_train.rec`` (4,000) and ``PREFIX_val.rec`` (1,000)."""
    prefix = os.path.join(tmp_path_factory.mktemp("mnist-rec"), "mnist")
    im2rec("--mnist", prefix, mnist_sample)
    return prefix
