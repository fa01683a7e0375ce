"""Accuracy against speed: one LCNN per L1 strength lambda, trained, then measured.

    python -m lcnn_gluon.sweep --network lenet_lcnn_fast --lambdas 0.005,0.01,0.02,0.05 \\
        --num-epochs 10 --out sweep-lenet [--init-from lenet-0030.params] \\
        --dataset mnist --data-train mnist_train.rec --data-val mnist_val.rec [lcnn_gluon.train flags]

Each point is a run of :mod:`lcnn_gluon.train` with ``--lambda`` set (its log in
``DIR/lambda-X/train.log``), then measured: top-1 on the validation data, the density of P
over all lookup layers, the counted speedup (:mod:`lcnn_gluon.flops`) and the measured one
(exported with the C++ operator, against the dense network, batch 1, in this process:
:func:`lcnn_gluon.speed.exported_vs_dense`). The dense network is the one of ``--init-from``,
or else is trained here with the same flags; it is the row with ``lambda`` = ``dense``.
From ``--init-from`` each point starts with all of P above the threshold (``--init-density``
1 unless given), so that lambda alone sets how far fine-tuning trades accuracy for speed.

Writes ``DIR/sweep.csv`` and ``DIR/sweep.png`` (top-1 against speedup, counted and measured).
A finished point is kept in ``DIR/points/``: the same command again skips it, and an
interrupted point resumes from its last checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import os
import re
import sys
from typing import List, Optional

import mxnet as mx
from tqdm import tqdm

from . import atomic, checkpoint, data, fit, flops, ops, speed, train
from . import nn as lnn
from .distributed import Cluster

COLUMNS = ("lambda", "dictionary_sizes", "density", "top1", "counted_speedup", "measured_speedup",
           "dense_ms", "lcnn_ms", "epochs")
DENSE = "dense"  # the lambda column of the dense network's row
MEASURE_BATCH = 1  # a request at a time: the latency users of a served model see
# With --init-from, each point starts from the dense weights with every coefficient of P above
# the layer's threshold kept (the start is as accurate as the dense network); its lambda then
# decides how sparse fine-tuning makes it. (--init-density overrides.)
SWEEP_INIT_DENSITY = 1.0
OWNED_FLAGS = ("--model-prefix", "--lambda", "--load-epoch")  # set per point by the sweep


def parse_args(argv=None):
    """(the sweep's own flags, the training flags every point shares)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False, epilog="Every other flag is "
                                     "one of python -m lcnn_gluon.train (see its --help).")
    parser.add_argument("--lambdas", required=True, help="comma-separated L1 strengths, one point each")
    parser.add_argument("--out", required=True, help="folder of sweep.csv, sweep.png and the points' runs")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per speed measurement (median)")
    own, rest = parser.parse_known_args(argv)
    try:
        own.lambdas = sorted({float(x) for x in own.lambdas.split(",") if x.strip()})
    except ValueError:
        parser.error(f"--lambdas {own.lambdas!r}: give comma-separated numbers, e.g. 0.005,0.01,0.02")
    if not own.lambdas or min(own.lambdas) < 0:
        parser.error(f"--lambdas {own.lambdas}: give at least one value, none negative")
    if own.runs < 1:
        parser.error(f"--runs {own.runs}: must be >= 1")
    for flag in OWNED_FLAGS:
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            parser.error(f"{flag} is set by the sweep for each point; leave it out")
    try:  # before any point trains: every point's measured speedup needs the operator
        ops.load()
    except (OSError, RuntimeError, mx.MXNetError) as e:
        parser.error(f"the measured speedup needs the C++ operator library (make -C operators): {e}")
    args = train.parse_args(rest)
    if not any(a == "--init-density" or a.startswith("--init-density=") for a in rest):
        args.init_density = SWEEP_INIT_DENSITY
    if "_lcnn" not in args.network:
        parser.error(f"--network {args.network}: the sweep trains LCNN networks (NAME_lcnn_*)")
    if not args.data_val:
        parser.error("--data-val is required: each point's top-1 is measured on it")
    if args.kv_store.startswith("dist"):
        parser.error(f"--kv-store {args.kv_store}: the sweep runs its points in this process; "
                     "train distributed points with lcnn_gluon.train")
    return own, args


EPOCH_ACCURACY = re.compile(r"Epoch\[(\d+)\] Validation-accuracy=([0-9.eE+-]+)$")  # train's log line


class _EpochProgress(logging.Handler):
    """Shows a point's finished epochs and last validation accuracy on the sweep's bar."""

    def __init__(self, bar: tqdm, key: str, epochs: int):
        super().__init__()
        self.bar, self.key, self.epochs = bar, key, epochs

    def emit(self, record: logging.LogRecord) -> None:
        found = EPOCH_ACCURACY.match(record.getMessage())
        if found:
            epoch, accuracy = int(found.group(1)), float(found.group(2))
            self.bar.set_postfix_str(f"{self.key}: epoch {epoch + 1}/{self.epochs}, accuracy {accuracy:.4f}")


def _train(args: argparse.Namespace, log_path: str, progress: Optional[logging.Handler] = None) -> None:
    """One lcnn_gluon.train run in this process, its log in ``log_path``."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handlers = [handler] + ([progress] if progress else [])
    root = logging.getLogger()
    for h in handlers:
        root.addHandler(h)
    try:
        logging.getLogger(train.__name__).info("arguments: %s", vars(args))
        train.seed_everything(args.seed)
        train.run(args, Cluster.create(args))
    finally:
        for h in handlers:
            root.removeHandler(h)
        handler.close()


def _resumable(args: argparse.Namespace, prefix: str, **changes) -> Optional[argparse.Namespace]:
    """The point's training arguments (``args`` with ``changes``), resuming from its last
    checkpoint if there is one; None when it has finished training already."""
    args = copy.copy(args)
    vars(args).update(changes, model_prefix=prefix)
    done = checkpoint.latest_epoch(prefix)
    if done is not None and done >= args.num_epochs:
        return None
    if done:
        args.load_epoch, args.init_from = done, None
        train.resume_model_args(args)
    return args


def overall_density(net) -> float:
    """Fraction of non-zero entries of P over every lookup layer together."""
    layers = lnn.lookup_layers(net)
    sizes = [layer.lookup.data().size for layer in layers]
    return sum(layer.density() * size for layer, size in zip(layers, sizes)) / max(sum(sizes), 1)


def dense_point(own, args: argparse.Namespace, progress: Optional[logging.Handler] = None) -> dict:
    """The dense network's row (trained here when there is no --init-from); its params path."""
    name = train.dense_counterpart(args)
    params = args.init_from
    epochs = None
    if not params:
        prefix = os.path.join(own.out, DENSE, name)
        dense_args = _resumable(args, prefix, network=name, dictionary_sizes=None, lambda_=None,
                                initial_sparsity=None)
        if dense_args is not None:
            _train(dense_args, os.path.join(own.out, DENSE, "train.log"), progress)
        params, epochs = checkpoint.paths(prefix, args.num_epochs)["params"], args.num_epochs
    net = train.load_trained(name, params, args.num_classes, [mx.cpu()])
    val = data.val_iter(args.data_val, args.batch_size, args.dataset, args.image_shape)
    top1 = dict(fit.evaluate(net, val, [mx.cpu()], fit.metrics(args.num_classes)))["accuracy"]
    return {"lambda": DENSE, "dictionary_sizes": "", "density": 1.0, "top1": top1, "counted_speedup": 1.0,
            "measured_speedup": 1.0, "dense_ms": "", "lcnn_ms": "", "epochs": epochs or "",
            "params": os.path.abspath(params)}


def lcnn_point(own, args: argparse.Namespace, lam: float, dense_params: str,
               progress: Optional[logging.Handler] = None) -> dict:
    """Train (or resume) the LCNN with L1 strength ``lam``; its measured row."""
    folder = os.path.join(own.out, f"lambda-{lam:g}")
    prefix = os.path.join(folder, args.network)
    point_args = _resumable(args, prefix, lambda_=lam)
    if point_args is not None:
        _train(point_args, os.path.join(folder, "train.log"), progress)
    params = checkpoint.paths(prefix, args.num_epochs)["params"]
    meta = checkpoint.read_meta(params)
    net = train.load_trained(args.network, params, args.num_classes, [mx.cpu()], **meta.get("model_kwargs", {}))
    counted = flops.speedup(flops.count(flops.trace(net, args.image_shape)))
    dense = train.load_trained(train.dense_counterpart(args), dense_params, args.num_classes, [mx.cpu()])
    timing = speed.exported_vs_dense(net, dense, args.image_shape, MEASURE_BATCH, own.runs)
    sizes = ",".join(str(layer.dictionary_size) for layer in lnn.lookup_layers(net))
    return {"lambda": f"{lam:g}", "dictionary_sizes": sizes, "density": overall_density(net),
            "top1": meta["validation"]["accuracy"], "counted_speedup": counted, **timing,
            "epochs": args.num_epochs}


IGNORED_IN_CONFIG = ("model_prefix", "lambda_", "load_epoch", "disp_batches", "trust_states")


def point_config(args: argparse.Namespace) -> dict:
    """What makes the points of two sweeps comparable: every training flag but the per-point
    ones; the dense network's file by content (a retrained one differs), the data files by
    size and modification time (hashing a dataset would take minutes)."""
    config = {k: v for k, v in vars(args).items() if k not in IGNORED_IN_CONFIG}
    for key in ("data_train", "data_val"):
        stat = os.stat(config[key])
        config[key] = dict(path=os.path.abspath(config[key]), size=stat.st_size, mtime=stat.st_mtime)
    if config.get("init_from"):
        config["init_from"] = checkpoint.file_digest(config["init_from"])
    return json.loads(json.dumps(config))  # as stored: tuples become lists


def _point(own, key: str, config: dict, make) -> dict:
    """The stored row of point ``key``, or a new one from ``make()`` (then stored)."""
    path = os.path.join(own.out, "points", f"{key}.json")
    if os.path.exists(path):
        with open(path) as f:
            stored = json.load(f)
        theirs = stored.get("config") or {}
        differ = sorted(k for k in set(theirs) | set(config) if theirs.get(k) != config.get(k))
        if differ:
            raise ValueError(f"{path} was made by a different sweep (it differs in {', '.join(differ)}); "
                             f"use another --out, or remove {own.out}")
        return stored["row"]
    row = make()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    atomic.write_atomically(path, lambda tmp: checkpoint.write_json(tmp, dict(config=config, row=row)))
    return row


def write_csv(path: str, rows: List[dict]) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    atomic.write_atomically(path, write)


def plot(rows: List[dict], path: str, title: str) -> None:
    """Top-1 (%) against speedup: counted and measured as two series, one point per lambda,
    the dense network marked (a star and a dotted line at its top-1)."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    dense = next(r for r in rows if r["lambda"] == DENSE)
    points = [r for r in rows if r["lambda"] != DENSE]
    top1 = [100 * float(r["top1"]) for r in points]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.plot([float(r["counted_speedup"]) for r in points], top1, "o-", label="counted (multiplications)")
    ax.plot([float(r["measured_speedup"]) for r in points], top1, "s--",
            label=f"measured (C++ operator, batch {MEASURE_BATCH})")
    for r, y in zip(points, top1):
        ax.annotate(f"λ={r['lambda']}", (float(r["counted_speedup"]), y), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    ax.axhline(100 * float(dense["top1"]), color="gray", linestyle=":", linewidth=1)
    ax.plot([1.0], [100 * float(dense["top1"])], "k*", markersize=12, label="dense network")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_xlabel("speedup over the dense network")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv=None) -> int:
    own, args = parse_args(argv)
    logging.getLogger().setLevel(logging.INFO)  # the points' logs go to their files only
    os.makedirs(own.out, exist_ok=True)
    config = point_config(args)
    try:
        rows: List[dict] = []
        points = [DENSE] + own.lambdas
        bar = tqdm(points, desc="sweep", unit="point")
        for lam in bar:
            key = DENSE if lam == DENSE else f"lambda-{lam:g}"
            bar.set_postfix_str(key)
            progress = _EpochProgress(bar, key, args.num_epochs)
            if lam == DENSE:
                row = _point(own, key, config, lambda: dense_point(own, args, progress))
            else:
                row = _point(own, key, config, lambda: lcnn_point(own, args, lam, rows[0]["params"], progress))
            rows.append(row)
            write_csv(os.path.join(own.out, "sweep.csv"), rows)
            bar.write(f"{key}: top-1 {row['top1']:.4f}, density {row['density']:.4f}, counted "
                      f"{row['counted_speedup']:.2f}x, measured {row['measured_speedup']:.2f}x")
        png = os.path.join(own.out, "sweep.png")
        plot(rows, png, f"{args.network} from {train.dense_counterpart(args)}, {args.num_epochs} epochs per point")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(own.out, 'sweep.csv')} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
