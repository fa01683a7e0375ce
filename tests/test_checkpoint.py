"""Checkpoints are complete or absent, their optimizer state cannot run code, and bad files and
flags are errors naming them (exit status 2, no traceback)."""
import json
import os
import pickle
import shutil

import mxnet as mx
import pytest
from conftest import run
from mxnet import gluon
from test_train import train_args

from lcnn_gluon import checkpoint, trainer_state


@pytest.fixture(scope="module")
def trained(mnist_rec, tmp_path_factory):
    """A one-epoch lenet_lcnn_fast run: (prefix, output)."""
    prefix = str(tmp_path_factory.mktemp("ck") / "fast")
    return prefix, run(*train_args(mnist_rec, prefix, epochs=1)).stdout


def resume(mnist_rec, prefix, *extra):
    return run(*train_args(mnist_rec, prefix, "--load-epoch", "1", *extra, epochs=2), check=False)


def clone(prefix, tmp_path, name="copy"):
    """A copy of epoch 1 of ``prefix`` under a new prefix."""
    new = str(tmp_path / name)
    for kind, path in checkpoint.paths(prefix, 1).items():
        shutil.copy(path, checkpoint.paths(new, 1)[kind])
    return new


def test_optimizer_state_is_arrays_and_json_with_a_manifest(trained):
    prefix, _ = trained
    p = checkpoint.paths(prefix, 1)
    assert trainer_state.file_kind(p["states"]) == "ndarray"
    meta = json.loads(open(p["json"]).read())
    assert meta["trainer"]["optimizer"] == "lookupsgd" and meta["trainer"]["num_update"] == 32
    assert len(mx.nd.load(p["states"])) == sum(meta["trainer"]["layout"].values())  # one momentum each
    for kind in ("params", "states"):
        assert meta["files"][kind] == checkpoint.file_digest(p[kind])


def test_a_pickled_state_is_refused_and_never_unpickled(trained, mnist_rec, tmp_path):
    prefix = clone(trained[0], tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    p = checkpoint.paths(prefix, 1)
    with open(p["states"], "wb") as f:
        pickle.dump(Payload(), f)
    meta = json.loads(open(p["json"]).read())
    meta["files"]["states"] = checkpoint.file_digest(p["states"])  # a consistent, crafted checkpoint
    open(p["json"], "w").write(json.dumps(meta))
    proc = resume(mnist_rec, prefix)
    assert proc.returncode == 2 and "is a pickled optimizer state" in proc.stdout
    assert "--trust-states" in proc.stdout and "Traceback" not in proc.stdout
    assert not marker.exists()


def test_an_old_pickled_state_loads_when_trusted(trained, mnist_rec, tmp_path):
    """Written by MXNet's Trainer.save_states, as versions before 0.2 did."""
    prefix = clone(trained[0], tmp_path)
    p = checkpoint.paths(prefix, 1)
    net = gluon.nn.Dense(2, in_units=3)
    net.initialize()
    trainer = gluon.Trainer(net.collect_params(), "sgd", dict(momentum=0.9))
    trainer.save_states(p["states"])  # momentum for another network: loads, not used
    meta = json.loads(open(p["json"]).read())
    del meta["files"], meta["trainer"]  # what an old checkpoint's metadata held
    open(p["json"], "w").write(json.dumps(meta))
    assert "is a pickled optimizer state" in resume(mnist_rec, prefix).stdout
    proc = resume(mnist_rec, prefix, "--trust-states")
    assert proc.returncode == 0 and "resumed from" in proc.stdout, proc.stdout[-2000:]


def test_files_from_two_runs_are_not_a_checkpoint(trained, mnist_rec, tmp_path):
    """Killed between renames while overwriting an older checkpoint of the same prefix: new
    parameters beside the old state and metadata. The manifest tells."""
    prefix = clone(trained[0], tmp_path)
    other = str(tmp_path / "other")
    run(*train_args(mnist_rec, other, "--seed", "7", epochs=1))
    shutil.copy(checkpoint.paths(other, 1)["params"], checkpoint.paths(prefix, 1)["params"])
    proc = resume(mnist_rec, prefix)
    assert proc.returncode == 2 and "copy-0001.params is not the file its manifest" in proc.stdout


def test_a_save_removes_the_old_manifest_first(trained, tmp_path):
    prefix = clone(trained[0], tmp_path)
    p = checkpoint.paths(prefix, 1)

    class Broken(gluon.nn.Dense):
        def save_parameters(self, path, *args, **kwargs):
            raise OSError(28, "No space left on device")
    with pytest.raises(OSError):
        checkpoint.save(prefix, 1, Broken(2, in_units=2), None, {})
    assert not os.path.exists(p["json"])  # the epoch is now absent, not half old and half new
    assert sorted(os.listdir(tmp_path)) == ["copy-0001.params", "copy-0001.states"]


@pytest.mark.parametrize("damage,message", [
    ("truncate_states", "copy-0001.states is not the file its manifest"),
    ("json_list", "copy-0001.json: holds a JSON list, not the object a checkpoint writes"),
    ("json_garbage", "copy-0001.json: not valid JSON"),
])
def test_damaged_files_are_named(trained, mnist_rec, tmp_path, damage, message):
    prefix = clone(trained[0], tmp_path)
    p = checkpoint.paths(prefix, 1)
    if damage == "truncate_states":
        with open(p["states"], "r+b") as f:
            f.truncate(100)
    else:
        open(p["json"], "w").write("[1, 2]" if damage == "json_list" else "{not json")
    proc = resume(mnist_rec, prefix)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout


@pytest.mark.parametrize("flag,value,message", [
    ("--batch-size", "0", "--batch-size 0: must be >= 1"),
    ("--batch-size", "-5", "--batch-size -5: must be >= 1"),
    ("--lr", "-0.1", "--lr -0.1: must be > 0"),
    ("--num-epochs", "-3", "--num-epochs -3: must be >= 1"),
    ("--mom", "1.5", "--mom 1.5: must be in [0, 1)"),
    ("--lr-step-epochs", "-2", "--lr-step-epochs [-2]: must be epochs >= 1"),
])
def test_numbers_out_of_range_are_named(mnist_rec, tmp_path, flag, value, message):
    args = train_args(mnist_rec, str(tmp_path / "x"))
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    proc = run(*args, check=False)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout[-2000:]
    assert os.listdir(tmp_path) == []
