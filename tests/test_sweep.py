"""The accuracy-against-speed sweep: real training runs, the C++ operator timed, a real PNG."""
import csv
import json
import os
import shutil

import matplotlib.image
import pytest
from conftest import PY, run
from test_train import train_args

from lcnn_gluon import checkpoint, flops, get_model, sweep


def sweep_cmd(mnist_rec, out, *extra, lambdas="0.05,0.005", epochs=1):
    return [PY, "-m", "lcnn_gluon.sweep", "--network", "lenet_lcnn_fast", "--lambdas", lambdas,
            "--num-epochs", str(epochs), "--out", out, "--runs", "3", "--dataset", "mnist",
            "--data-train", mnist_rec + "_val.rec", "--data-val", mnist_rec + "_val.rec",
            "--batch-size", "32", "--lr", "0.05", "--disp-batches", "0", *extra]


def read_rows(out):
    with open(os.path.join(out, "sweep.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dense_params(mnist_rec, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("dense") / "lenet")
    run(*train_args(mnist_rec, prefix, network="lenet", epochs=1))
    return prefix + "-0001.params"


def test_sweep_from_a_dense_network_writes_the_table_and_the_plot(mnist_rec, dense_params, tmp_path):
    out = str(tmp_path / "sweep")
    proc = run(*sweep_cmd(mnist_rec, out, "--init-from", dense_params, "--init-bn-batches", "3"))
    assert f"wrote {out}/sweep.csv and {out}/sweep.png" in proc.stdout
    assert "lambda-0.05: epoch 1/1, accuracy 0." in proc.stdout  # the progress bar follows the epochs
    rows = read_rows(out)
    assert tuple(rows[0]) == sweep.COLUMNS
    assert [r["lambda"] for r in rows] == ["dense", "0.005", "0.05"]
    with open(dense_params[:-len(".params")] + ".json") as f:  # the run evaluated the same data
        assert float(rows[0]["top1"]) == pytest.approx(json.load(f)["validation"]["accuracy"], abs=1e-6)
    for r in rows[1:]:
        assert r["dictionary_sizes"] == "1,8,16"
        assert 0 < float(r["density"]) < 1  # P above the threshold at the start, then L1
        assert 0.5 < float(r["top1"]) <= 1
        params = checkpoint.paths(os.path.join(out, f"lambda-{r['lambda']}", "lenet_lcnn_fast"), 1)["params"]
        net = get_model("lenet_lcnn_fast", classes=10, lambda_=float(r["lambda"]))
        net.initialize()
        checkpoint.load_params(net, params, "lenet_lcnn_fast")
        assert float(r["counted_speedup"]) == pytest.approx(flops.speedup(flops.count(flops.trace(net, (1, 28, 28)))))
        assert float(r["density"]) == pytest.approx(sweep.overall_density(net), rel=1e-5)
        assert float(r["dense_ms"]) > 0 and float(r["lcnn_ms"]) > 0
        assert float(r["measured_speedup"]) == pytest.approx(float(r["dense_ms"]) / float(r["lcnn_ms"]))
        with open(os.path.join(out, f"lambda-{r['lambda']}", "train.log")) as f:
            log = f.read()
        assert "from its dense weight: relative error" in log and "'lambda_': " + r["lambda"] in log
    image = matplotlib.image.imread(os.path.join(out, "sweep.png"))
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0

    # the same command again: every point is kept, nothing is trained again
    stamps = {p: os.path.getmtime(p) for p in (os.path.join(out, d, "lenet_lcnn_fast-0001.params")
                                               for d in ("lambda-0.005", "lambda-0.05"))}
    before = read_rows(out)
    run(*sweep_cmd(mnist_rec, out, "--init-from", dense_params, "--init-bn-batches", "3"))
    assert read_rows(out) == before and all(os.path.getmtime(p) == t for p, t in stamps.items())

    # a point interrupted after its first epoch resumes there
    resumed = str(tmp_path / "resumed")
    shutil.copytree(os.path.join(out, "lambda-0.05"), os.path.join(resumed, "lambda-0.05"))
    run(*sweep_cmd(mnist_rec, resumed, "--init-from", dense_params, lambdas="0.05", epochs=2))
    with open(os.path.join(resumed, "lambda-0.05", "train.log")) as f:
        assert "resumed from" in f.read()
    assert [r["epochs"] for r in read_rows(resumed)] == ["", "2"]

    # another sweep into the same folder is refused, naming the point file
    proc = run(*sweep_cmd(mnist_rec, out, epochs=2), check=False)
    assert proc.returncode == 2 and "was made by a different sweep (it differs in " in proc.stdout
    assert "init_from" in proc.stdout and "num_epochs" in proc.stdout
    assert os.path.join(out, "points") in proc.stdout


def test_sweep_trains_the_dense_network_without_init_from(mnist_rec, tmp_path):
    out = str(tmp_path / "scratch")
    run(*sweep_cmd(mnist_rec, out, lambdas="0.02"))
    rows = read_rows(out)
    assert [r["lambda"] for r in rows] == ["dense", "0.02"]
    with open(os.path.join(out, "dense", "lenet-0001.json")) as f:
        meta = json.load(f)
    assert meta["network"] == "lenet" and not meta["lookup_layers"]
    assert float(rows[0]["top1"]) == pytest.approx(meta["validation"]["accuracy"], abs=1e-6)


@pytest.mark.parametrize("extra,message", [
    (["--lambdas", "0.1,x"], "--lambdas '0.1,x': give comma-separated numbers"),
    (["--lambdas", "-1"], "none negative"),
    (["--model-prefix", "p"], "--model-prefix is set by the sweep"),
    (["--lambda", "0.1"], "--lambda is set by the sweep"),
    (["--network", "lenet"], "the sweep trains LCNN networks"),
])
def test_sweep_flags_are_checked(mnist_rec, tmp_path, extra, message):
    cmd = sweep_cmd(mnist_rec, str(tmp_path / "out"))
    for flag, value in zip(extra[::2], extra[1::2]):
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = value
        else:
            cmd += [flag, value]
    proc = run(*cmd, check=False)
    assert proc.returncode == 2 and message in proc.stdout
    assert not os.path.exists(tmp_path / "out")


def test_sweep_without_the_operator_stops_before_training(mnist_rec, tmp_path):
    proc = run(*sweep_cmd(mnist_rec, str(tmp_path / "out")), check=False,
               env={"LCNN_CPU_FLAGS": "fpu sse sse2 sse4_2 avx"})  # a CPU the kernels cannot run on
    assert proc.returncode == 2 and "the measured speedup needs the C++ operator library" in proc.stdout
    assert "AVX2" in proc.stdout and not os.path.exists(tmp_path / "out")
