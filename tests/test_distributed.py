"""Distributed training through tools/launch.py: real ps-lite scheduler, servers and workers on
127.0.0.1 only, and a real sshd for the ssh launcher."""
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import mxnet as mx
import numpy as np
import pytest
from conftest import PY, ROOT, run
from mxnet import gluon

import dist_worker
from lcnn_gluon import fit
from lcnn_gluon import nn as lnn

LAUNCH = os.path.join(ROOT, "tools", "launch.py")
ONE_THREAD = ["--env", "OMP_NUM_THREADS=1"]


def launch(*args, check=True, timeout=300):
    return run(PY, LAUNCH, *args, check=check, timeout=timeout)


def train_cmd(mnist_rec, prefix, *extra, epochs=2, network="lenet"):
    return [PY, "-m", "lcnn_gluon.train", "--network", network, "--dataset", "mnist",
            "--data-train", mnist_rec + "_val.rec", "--batch-size", "32", "--num-epochs", str(epochs),
            "--lr", "0.05", "--disp-batches", "0", "--model-prefix", prefix, *extra]


def job_processes(token: str):
    """PIDs of live processes whose command line mentions ``token``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if token.encode() in f.read() and int(pid) != os.getpid():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def train_losses(out: str, worker: str):
    return [float(x) for x in re.findall(rf"\[{worker}\] .*Train-loss=([\d.]+)", out)]


@pytest.mark.parametrize("lcnn", [False, True], ids=["dense", "lcnn"])
def test_dist_sync_workers_agree_with_single_process(mnist_rec, tmp_path, lcnn):
    rec, steps, batch = mnist_rec + "_val.rec", 6, 16
    worker = [PY, os.path.join(ROOT, "tests", "dist_worker.py"), "--rec", rec, "--out", tmp_path,
              "--steps", str(steps), "--batch-size", str(batch)] + (["--lcnn"] if lcnn else [])
    out = launch("-n", "2", "-s", "2", *ONE_THREAD, *worker).stdout
    assert "worker 0 of 2" in out and "worker 1 of 2" in out
    ranks = [mx.nd.load(str(tmp_path / f"rank{r}.params")) for r in (0, 1)]
    # the reference: one process taking the union of both workers' batches at each step,
    # with no synchronisation of its own (it also checks that the reader does not let the
    # next fetch overwrite a batch that queued work still reads: it did, before RecordIter waited)
    net = dist_worker.build(lcnn)
    trainer = gluon.Trainer(net.collect_params(), dist_worker.optimizer(lcnn), dict(dist_worker.OPTIMIZER),
                            kvstore=None)
    assert lnn.updates_lookups(trainer) == lcnn
    shards = [dist_worker.batches(rec, batch, 2, r) for r in (0, 1)]
    loss_fn, layers = gluon.loss.SoftmaxCrossEntropyLoss(), lnn.lookup_layers(net)
    for _, (a, b) in zip(range(steps), zip(*shards)):
        both = mx.io.DataBatch([mx.nd.concat(a.data[0], b.data[0], dim=0)],
                               [mx.nd.concat(a.label[0], b.label[0], dim=0)], pad=0)
        fit.train_step(net, trainer, loss_fn, layers, both, [mx.cpu()], 2 * batch)
    reference = {k: v.data() for k, v in net._collect_params_with_prefix().items()}
    for name, value in reference.items():
        np.testing.assert_array_equal(ranks[0][name].asnumpy(), ranks[1][name].asnumpy(), err_msg=name)
        np.testing.assert_allclose(ranks[0][name].asnumpy(), value.asnumpy(), rtol=1e-5, atol=1e-5,
                                   err_msg=name)
    if lcnn:
        for layer in layers:
            key = [k for k, v in net._collect_params_with_prefix().items() if v is layer.alive][0]
            alive = ranks[0][key].asnumpy()
            assert 0.005 < alive.mean() < 0.7  # the threshold and L1 pruned a good part
            for params in ranks:
                lookup = params[key.replace("alive", "lookup")].asnumpy()
                assert np.all(lookup[alive == 0] == 0), "a pruned entry is non-zero on a worker"


def test_dist_sync_checkpoints_once_and_resumes(mnist_rec, tmp_path):
    prefix = str(tmp_path / "ck" / "lenet")
    out = launch("-n", "2", "-s", "2", *ONE_THREAD, *train_cmd(mnist_rec, prefix, "--kv-store",
                                                                "dist_sync")).stdout
    assert sorted(os.listdir(tmp_path / "ck")) == [f"lenet-000{e}.{x}" for e in (1, 2)
                                                   for x in ("json", "params", "states")]
    for worker in ("worker 0", "worker 1"):
        losses = train_losses(out, worker)
        assert len(losses) == 2 and losses[1] < losses[0]
    out = launch("-n", "2", "-s", "2", *ONE_THREAD,
                 *train_cmd(mnist_rec, prefix, "--kv-store", "dist_sync", "--load-epoch", "2",
                            epochs=3)).stdout
    assert out.count("resumed from") == 2 and "Epoch[2] Train-loss" in out
    assert os.path.exists(prefix + "-0003.params")


@pytest.mark.parametrize("mode", [["--kv-store", "dist_async"],
                                  ["--kv-store", "dist_sync", "--gc-type", "2bit", "--gc-threshold", "0.5"],
                                  ["--kv-store", "dist_device_sync"]],
                         ids=["async", "2bit", "device_sync"])
def test_other_modes_complete_and_learn(mnist_rec, tmp_path, mode):
    out = launch("-n", "2", "-s", "1", *ONE_THREAD,
                 *train_cmd(mnist_rec, str(tmp_path / "m"), *mode, epochs=3)).stdout
    for worker in ("worker 0", "worker 1"):
        losses = train_losses(out, worker)
        assert len(losses) == 3 and losses[-1] < losses[0], (worker, losses)


def test_killed_worker_ends_the_job_and_resume_works(mnist_rec, tmp_path):
    prefix = str(tmp_path / "kill" / "lenet")
    cmd = [PY, LAUNCH, "-n", "2", "-s", "2", *ONE_THREAD,
           *train_cmd(mnist_rec, prefix, "--kv-store", "dist_sync", "--disp-batches", "4", epochs=50)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Epoch[1] Batch [4]" in line and os.path.exists(prefix + "-0001.json"):
            break
    victim = [p for p in job_processes(str(tmp_path / "kill"))
              if b"DMLC_ROLE=worker" in open(f"/proc/{p}/environ", "rb").read()][0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    rest, _ = proc.communicate(timeout=90)
    elapsed = time.time() - killed_at
    assert proc.returncode != 0 and elapsed < 60
    assert re.search(r"\[launch\] worker \d \(pid \d+\) failed with signal SIGKILL", rest), rest[-3000:]
    time.sleep(0.5)
    assert job_processes(str(tmp_path / "kill")) == []  # nothing of the job is left
    assert mx.nd.load(prefix + "-0001.params")  # the last checkpoint is intact
    out = launch("-n", "2", "-s", "2", *ONE_THREAD,
                 *train_cmd(mnist_rec, prefix, "--kv-store", "dist_sync", "--load-epoch", "1",
                            epochs=2)).stdout
    assert out.count("resumed from") == 2 and os.path.exists(prefix + "-0002.params")


def test_launcher_errors_are_named(tmp_path):
    proc = launch("-n", "2", "--launcher", "ssh", "true", check=False)
    assert proc.returncode == 2 and "needs -H/--hostfile" in proc.stdout
    proc = launch("-n", "1", "-s", "1", PY, "-c", "import sys; sys.exit(3)", check=False)
    assert proc.returncode == 1 and "failed with exit code 3" in proc.stdout


@pytest.fixture
def sshd(tmp_path):
    """A real sshd on 127.0.0.1 with a key pair made for the test; yields (port, ssh options)."""
    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    assert os.path.exists(binary), "sshd missing: `make test` installs openssh-server"
    d = tmp_path / "sshd"
    d.mkdir()
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n"
        f"AuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin yes\nPasswordAuthentication no\n"
        "StrictModes no\nUsePAM no\nAcceptEnv *\n")
    os.makedirs("/run/sshd", exist_ok=True)
    server = subprocess.Popen([binary, "-D", "-e", "-f", str(d / "sshd_config")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield port, f"-i {d}/client_key -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    server.terminate()
    server.wait(timeout=10)


def test_ssh_launcher_runs_a_dist_sync_job(sshd, mnist_rec, tmp_path):
    port, options = sshd
    hostfile = tmp_path / "hosts"
    hostfile.write_text(f"# two entries for one sshd\n127.0.0.1:{port}\nroot@127.0.0.1:{port}\n")
    prefix = str(tmp_path / "job" / "lenet")
    out = launch("-n", "2", "-s", "2", "--launcher", "ssh", "-H", hostfile, "--host-ip", "127.0.0.1",
                 "--ssh-options", options, *ONE_THREAD,
                 *train_cmd(mnist_rec, prefix, "--kv-store", "dist_sync", epochs=1)).stdout
    assert "[worker 0@127.0.0.1]" in out and "[worker 1@root@127.0.0.1]" in out
    assert out.count("Epoch[0] Train-loss") == 2 and os.path.exists(prefix + "-0001.params")
    time.sleep(1)
    assert job_processes(str(tmp_path / "job")) == []  # remote roles and their watchers too
