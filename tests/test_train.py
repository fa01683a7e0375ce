"""python -m lcnn_gluon.train: logs MXNet can parse, checkpoints, exact resume, clear errors."""
import json
import os
import signal
import subprocess

import mxnet as mx
import numpy as np
import pytest
from conftest import PY, ROOT, mxnet_im2rec_path, run

DETERMINISTIC = {"OMP_NUM_THREADS": "1", "MXNET_ENGINE_TYPE": "NaiveEngine"}


def train_args(mnist_rec, prefix, *extra, network="lenet_lcnn_fast", epochs=2):
    # the 1,000-digit split as training data keeps these runs short
    return [PY, "-m", "lcnn_gluon.train", "--network", network, "--dataset", "mnist",
            "--data-train", mnist_rec + "_val.rec", "--data-val", mnist_rec + "_val.rec",
            "--batch-size", "32", "--num-epochs", str(epochs), "--lr", "0.1", "--lr-step-epochs", "2",
            "--disp-batches", "10", "--model-prefix", prefix, *extra]


def test_logs_parse_with_mxnet_and_checkpoints_are_complete(mnist_rec, tmp_path):
    prefix = str(tmp_path / "ck" / "fast")
    out = run(*train_args(mnist_rec, prefix)).stdout
    assert "Epoch[1] Batch [10]\tSpeed: " in out and "samples/sec\taccuracy=" in out
    assert "Epoch[1] counted speedup=" in out and "Epoch[1] density " in out
    log = tmp_path / "train.log"
    log.write_text(out)
    parse_log = os.path.join(os.path.dirname(mxnet_im2rec_path()), "parse_log.py")
    table = run(PY, parse_log, log).stdout.strip().splitlines()
    assert table[0].startswith("| epoch | train-accuracy | val-accuracy | time |")
    assert len(table) == 4  # header, separator, 2 epochs
    val = float(table[-1].split("|")[3])
    assert 0.5 < val <= 1.0
    names = sorted(os.listdir(tmp_path / "ck"))
    assert names == [f"fast-000{e}.{x}" for e in (1, 2) for x in ("json", "params", "states")]
    meta = json.loads((tmp_path / "ck" / "fast-0002.json").read_text())
    assert meta["network"] == "lenet_lcnn_fast" and meta["epoch"] == 2
    assert meta["validation"]["accuracy"] == pytest.approx(val, abs=1e-6)
    assert meta["speedup"] > 1 and len(meta["densities"]) == 3


def test_killed_run_resumes_to_the_same_weights(mnist_rec, tmp_path):
    full, broken = str(tmp_path / "full"), str(tmp_path / "broken")
    run(*train_args(mnist_rec, full, epochs=3), env=DETERMINISTIC)
    proc = subprocess.Popen(train_args(mnist_rec, broken, epochs=3), cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=dict(os.environ, **DETERMINISTIC))
    for line in proc.stdout:  # kill it in the middle of the second epoch
        if "Epoch[1] Batch [20]" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert os.path.exists(broken + "-0001.params") and not os.path.exists(broken + "-0002.params")
    out = run(*train_args(mnist_rec, broken, "--load-epoch", "1", epochs=3), env=DETERMINISTIC).stdout
    assert "resumed from" in out and "Epoch[0]" not in out.split("resumed from")[1]
    a, b = mx.nd.load(full + "-0003.params"), mx.nd.load(broken + "-0003.params")
    assert sorted(a) == sorted(b)
    for name in a:
        np.testing.assert_allclose(a[name].asnumpy(), b[name].asnumpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)


@pytest.mark.parametrize("change,message", [
    ({"--network": "lenet9"}, "unknown --network 'lenet9'; available: "),
    ({"--data-train": "/nonexistent/x.rec"}, "/nonexistent/x.rec: no such file"),
    ({"--image-shape": "3,28,28"}, "images have 1 channel(s) but --image-shape asks for 3"),
    ({"--image-shape": "1,32,32"}, "smaller than --image-shape 32x32"),
    ({"--load-epoch": "7"}, "fast-0007.json is missing"),
])
def test_bad_input_is_named(mnist_rec, tmp_path, change, message):
    args = train_args(mnist_rec, str(tmp_path / "fast"))
    for flag, value in change.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    proc = run(*args, check=False)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout


def test_checkpoint_of_another_network_is_refused(mnist_rec, tmp_path):
    prefix = str(tmp_path / "net")
    run(*train_args(mnist_rec, prefix, network="lenet", epochs=1))
    proc = run(*train_args(mnist_rec, prefix, "--load-epoch", "1", epochs=2), check=False)
    assert proc.returncode == 2
    assert "holds network 'lenet', not 'lenet_lcnn_fast'" in proc.stdout
    os.remove(prefix + "-0001.json")  # without the metadata, the parameters themselves do not fit
    with open(prefix + "-0001.json", "w") as f:
        json.dump({}, f)
    proc = run(*train_args(mnist_rec, prefix, "--load-epoch", "1", epochs=2), check=False)
    assert proc.returncode == 2 and "does not fit network lenet_lcnn_fast" in proc.stdout


def test_test_io_reports_speed(mnist_rec, tmp_path):
    out = run(*train_args(mnist_rec, str(tmp_path / "x"), "--test-io")).stdout
    assert "test-io: 1000 images" in out


def test_resume_keeps_the_checkpoints_lookup_layers(mnist_rec, tmp_path):
    prefix = str(tmp_path / "fast")
    run(*train_args(mnist_rec, prefix, "--lambda", "0.05", epochs=1))
    saved = json.loads((tmp_path / "fast-0001.json").read_text())["lookup_layers"]
    assert len(saved) == 3 and all(layer["lambda"] == 0.05 for layer in saved.values())
    assert all(layer["eps"] == pytest.approx(layer["initial_sparsity"] / np.sqrt(
        layer["dictionary_size"] * (25 if i < 2 else 16))) for i, layer in enumerate(saved.values()))
    # a flag that would change the layers under the trained P: refused, naming the flag
    proc = run(*train_args(mnist_rec, prefix, "--load-epoch", "1", "--initial-sparsity", "0.9"),
               check=False)
    assert proc.returncode == 2 and "--initial-sparsity 0.9 conflicts with checkpoint" in proc.stdout
    assert "initial_sparsity 0.1, this run would use 0.9" in proc.stdout
    proc = run(*train_args(mnist_rec, prefix, "--load-epoch", "1", "--lambda", "0.3"), check=False)
    assert proc.returncode == 2 and "--lambda 0.3 conflicts" in proc.stdout
    # without the flags: the checkpoint's values (lambda 0.05, not the preset's 0.02)
    out = run(*train_args(mnist_rec, prefix, "--load-epoch", "1", epochs=2)).stdout
    assert "resumed from" in out and "'lambda_': 0.05" in out
    resumed = json.loads((tmp_path / "fast-0002.json").read_text())
    assert resumed["lookup_layers"] == saved and resumed["model_kwargs"]["lambda_"] == 0.05
    # the same value as the checkpoint's is not a conflict
    run(*train_args(mnist_rec, prefix, "--load-epoch", "2", "--initial-sparsity", "0.1", epochs=2))
