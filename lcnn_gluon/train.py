"""Train a dense or LCNN network on ``.rec`` data, in the style of MXNet's image-classification example.

    python -m lcnn_gluon.train --network lenet_lcnn_fast --dataset mnist \\
        --data-train data/packed/mnist_train.rec --data-val data/packed/mnist_val.rec \\
        --batch-size 64 --num-epochs 20 --lr 0.1 --lr-step-epochs 12,16 --model-prefix out/lenet

Checkpoints ``PREFIX-%04d.params/.states/.json`` after each epoch; ``--load-epoch N``
resumes exactly from epoch N (weights, optimizer state, schedule, data order).
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from typing import List

import mxnet as mx
import numpy as np
from mxnet import gluon

from . import checkpoint, conversion, data, fit, flops
from . import nn as lnn
from .distributed import Cluster, add_dist_args
from .model_zoo import get_model, list_models

log = logging.getLogger("lcnn_gluon.train")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Data")
    g.add_argument("--data-train", help="training .rec (its .idx beside it)")
    g.add_argument("--data-val", help="validation .rec")
    g.add_argument("--dataset", default="imagenet", choices=sorted(data.PRESETS),
                   help="preprocessing preset (mean, std, resize, crop, flip)")
    g.add_argument("--image-shape", help="C,H,W fed to the network (default: the dataset's)")
    g.add_argument("--num-classes", type=int, help="default: 10 for mnist, 1000 for imagenet")
    g.add_argument("--random-resized-crop", action="store_true", help="8-100%% area crops")
    g.add_argument("--color-jitter", type=float, default=0.0, help="brightness/contrast/saturation")
    g.add_argument("--test-io", action="store_true", help="only read the training data, report speed")


def add_model_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Model")
    g.add_argument("--network", required=True, help=f"one of: {', '.join(list_models())}")
    g.add_argument("--dictionary-sizes", help="comma-separated k per lookup layer (preset's by default)")
    g.add_argument("--lambda", dest="lambda_", type=float, help="L1 strength lambda' (preset's)")
    g.add_argument("--initial-sparsity", type=float, help="c in eps = c / sqrt(kh*kw*k) (preset's)")
    g.add_argument("--init-from", help="start from the parameters of a trained dense network "
                                       "(PREFIX-NNNN.params): each lookup layer factorised from its weight")
    g.add_argument("--init-network", help="with --init-from: the dense network those parameters belong to "
                                          "(default: --network without its _lcnn_* suffix)")
    g.add_argument("--init-density", type=float, default=conversion.DEFAULT_DENSITY,
                   help="with --init-from: fraction of each lookup tensor kept by the factorisation")
    g.add_argument("--init-bn-batches", type=int, default=50,
                   help="with --init-from: training batches (weights unchanged) that re-estimate the "
                        "BatchNorm statistics after the factorisation")


def add_fit_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Training")
    g.add_argument("--gpus", default="", help="comma-separated GPU ids; CPU when empty")
    g.add_argument("--cpus", type=int, default=0,
                   help="train on this many CPU contexts, as --gpus on GPUs (the batch is split "
                        "over them, gradients reduced through --kv-store local or device)")
    g.add_argument("--kv-store", default="device",
                   choices=["local", "device", "dist_sync", "dist_async", "dist_device_sync"])
    g.add_argument("--batch-size", type=int, default=128, help="per worker, over all its devices")
    g.add_argument("--num-epochs", type=int, default=10)
    g.add_argument("--optimizer", default="sgd", choices=["sgd", "nag"])
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--lr-mode", default="step", choices=["step", "cosine"])
    g.add_argument("--lr-factor", type=float, default=0.1)
    g.add_argument("--lr-step-epochs", default="", help="e.g. 30,60 (step mode)")
    g.add_argument("--warmup-epochs", type=float, default=0.0)
    g.add_argument("--warmup-lr", type=float, default=0.0, help="learning rate at the start of warm-up")
    g.add_argument("--mom", type=float, default=0.9)
    g.add_argument("--wd", type=float, default=1e-4)
    g.add_argument("--model-prefix", help="checkpoint prefix; none saved when empty")
    g.add_argument("--load-epoch", type=int, help="resume from PREFIX-%%04d.* of this epoch")
    g.add_argument("--trust-states", action="store_true",
                   help="with --load-epoch: accept a pickled .states of an earlier version (a pickle "
                        "runs whatever code it holds: only for files you wrote yourself)")
    g.add_argument("--disp-batches", type=int, default=20, help="log every this many batches")
    g.add_argument("--seed", type=int, default=0)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for add in (add_data_args, add_model_args, add_fit_args, add_dist_args):
        add(parser)
    args = parser.parse_args(argv)
    preset = data.get_preset(args.dataset)
    try:
        args.image_shape = (data.parse_image_shape(args.image_shape) if args.image_shape
                            else preset.data_shape)
        args.lr_step_epochs = [int(x) for x in args.lr_step_epochs.split(",") if x]
        args.dictionary_sizes = ([int(x) for x in args.dictionary_sizes.split(",")]
                                 if args.dictionary_sizes else None)
    except ValueError as e:
        parser.error(str(e) if "--image-shape" in str(e) else f"bad number in a comma-separated flag: {e}")
    args.num_classes = args.num_classes or (10 if args.dataset == "mnist" else 1000)
    if args.network not in list_models():
        parser.error(f"unknown --network {args.network!r}; available: {', '.join(list_models())}")
    if not args.data_train:
        parser.error("--data-train is required")
    for flag, rec in (("--data-train", args.data_train), ("--data-val", args.data_val)):
        if rec:
            try:
                data.check_rec(rec, args.image_shape, preset.resize, args.num_classes)
            except ValueError as e:
                parser.error(f"{flag}: {e}")
    _check_ranges(parser, args)
    if args.init_from and args.load_epoch is not None:
        parser.error("--init-from starts a new run; --load-epoch resumes one: give one of them")
    if args.init_from and not 0 < args.init_density <= 1:
        parser.error(f"--init-density {args.init_density}: must be in (0, 1]")
    if args.init_from and not os.path.isfile(args.init_from):
        parser.error(f"--init-from {args.init_from}: no such file")
    if args.init_from and dense_counterpart(args) not in list_models():
        parser.error(f"--init-network {dense_counterpart(args)!r}: unknown; available: {', '.join(list_models())}")
    if args.load_epoch is not None and not args.model_prefix:
        parser.error("--load-epoch needs --model-prefix")
    if args.cpus < 0 or (args.cpus and args.gpus):
        parser.error(f"--cpus {args.cpus}: give a number >= 1 of CPU contexts, or --gpus, not both")
    if args.batch_size < len(contexts(args)):
        parser.error(f"--batch-size {args.batch_size} is smaller than the {len(contexts(args))} devices")
    if args.load_epoch is not None:
        try:
            resume_model_args(args)
        except ValueError as e:
            parser.error(str(e))
    return args


def _check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Numbers outside what training can use: a clear error naming the flag."""
    rules = [("--batch-size", args.batch_size, args.batch_size >= 1, ">= 1"),
             ("--num-epochs", args.num_epochs, args.num_epochs >= 1, ">= 1"),
             ("--lr", args.lr, args.lr > 0, "> 0"),
             ("--lr-factor", args.lr_factor, 0 < args.lr_factor <= 1, "in (0, 1]"),
             ("--mom", args.mom, 0 <= args.mom < 1, "in [0, 1)"),
             ("--wd", args.wd, args.wd >= 0, ">= 0"),
             ("--warmup-epochs", args.warmup_epochs, 0 <= args.warmup_epochs < args.num_epochs,
              "in [0, --num-epochs)"),
             ("--warmup-lr", args.warmup_lr, args.warmup_lr >= 0, ">= 0"),
             ("--disp-batches", args.disp_batches, args.disp_batches >= 0, ">= 0"),
             ("--load-epoch", args.load_epoch, args.load_epoch is None or args.load_epoch >= 1, ">= 1"),
             ("--lr-step-epochs", args.lr_step_epochs, all(e >= 1 for e in args.lr_step_epochs),
              "epochs >= 1")]
    for flag, value, ok, allowed in rules:
        if not ok:
            parser.error(f"{flag} {value}: must be {allowed}")


LOOKUP_FLAGS = {"dictionary_size": ("--dictionary-sizes", "dictionary_sizes"),
                "lambda": ("--lambda", "lambda_"), "initial_sparsity": ("--initial-sparsity", "initial_sparsity")}


def resume_model_args(args: argparse.Namespace) -> None:
    """For ``--load-epoch``: take the lookup-layer flags not given from the checkpoint, and
    refuse a given flag that builds other lookup layers than the checkpoint's (a different
    threshold or L1 under the trained P). ``ValueError`` names the flag."""
    meta_path = checkpoint.paths(args.model_prefix, args.load_epoch)["json"]
    if not os.path.isfile(meta_path):
        return  # checkpoint.load says that it is missing
    meta = checkpoint.read_meta(checkpoint.paths(args.model_prefix, args.load_epoch)["params"])
    if meta.get("network") not in (None, args.network):
        return  # checkpoint.load says whose it is
    saved_kwargs = meta.get("model_kwargs", {})
    for _, attr in LOOKUP_FLAGS.values():
        if getattr(args, attr) is None and attr in saved_kwargs:
            setattr(args, attr, saved_kwargs[attr])
    trained = meta.get("lookup_layers") or lnn.lookup_config(
        get_model(args.network, classes=args.num_classes, **saved_kwargs))
    now = lnn.lookup_config(get_model(args.network, classes=args.num_classes, **model_kwargs(args)))
    for path in sorted(set(trained) | set(now)):
        for key, (flag, attr) in LOOKUP_FLAGS.items():
            was, will = trained.get(path, {}).get(key), now.get(path, {}).get(key)
            if was != will:
                raise ValueError(f"{flag} {getattr(args, attr)} conflicts with checkpoint {meta_path}: "
                                 f"layer {path} was trained with {key} {was}, this run would use {will}; "
                                 f"leave {flag} out to resume with the checkpoint's value")


def model_kwargs(args: argparse.Namespace) -> dict:
    """The LCNN flags given on the command line, as model keyword arguments."""
    given = dict(dictionary_sizes=args.dictionary_sizes, lambda_=args.lambda_,
                 initial_sparsity=args.initial_sparsity)
    return {k: v for k, v in given.items() if v is not None}


def contexts(args: argparse.Namespace) -> List[mx.Context]:
    """The devices of this process: ``--gpus``, or ``--cpus`` CPU contexts, or one CPU."""
    gpus = [mx.gpu(int(i)) for i in args.gpus.split(",") if i.strip()]
    return gpus or [mx.cpu(i) for i in range(args.cpus)] or [mx.cpu()]


def build_net(args: argparse.Namespace, ctxs: List[mx.Context]):
    """The network, initialised on ``ctxs``, forms chosen, hybridized; and its layer trace."""
    net = get_model(args.network, classes=args.num_classes, **model_kwargs(args))
    return net, fit.prepare(net, args.image_shape, args.batch_size, ctxs)


def make_data(args: argparse.Namespace, cluster: Cluster):
    """This worker's shard of the training data (equal steps on every worker) and the validation data."""
    # every worker takes as many steps as the largest shard (the first) needs
    largest = data.shard_size(data.count_records(args.data_train), cluster.num_workers, 0)
    train = data.train_iter(args.data_train, args.batch_size, args.dataset, args.image_shape,
                            num_parts=cluster.num_workers, part_index=cluster.rank, seed=args.seed,
                            epoch=args.load_epoch or 0, num_batches=-(-largest // args.batch_size),
                            random_resized_crop=args.random_resized_crop,
                            color_jitter=args.color_jitter)
    val = (data.val_iter(args.data_val, args.batch_size, args.dataset, args.image_shape)
           if args.data_val else None)
    return train, val


def make_trainer(args: argparse.Namespace, net, cluster: Cluster, steps_per_epoch: int,
                 ctxs: List[mx.Context]) -> gluon.Trainer:
    sched = fit.lr_scheduler(args.lr_mode, args.lr, steps_per_epoch, args.num_epochs,
                             args.lr_step_epochs, args.lr_factor, args.warmup_epochs, args.warmup_lr)
    opt = dict(learning_rate=args.lr, wd=args.wd, lr_scheduler=sched, momentum=args.mom)
    name = args.optimizer
    if lnn.lookup_layers(net):  # SGD with the lookup rule fused, where it can run
        name = lnn.optimizer_for(name, ctxs, args.mom, cluster.update_on_kvstore)
    return cluster.trainer(net.collect_params(), name, opt)


def lcnn_report(epoch: int, layers: List[flops.Layer]) -> dict:
    """Log each lookup layer's density and the counted speedup; return them."""
    rows = flops.count(layers)
    densities = {r.name: round(r.density, 5) for r in rows if r.density is not None}
    if densities:
        log.info("Epoch[%d] density %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in densities.items()))
        log.info("Epoch[%d] counted speedup=%.2f", epoch, flops.speedup(rows))
    return dict(densities=densities, speedup=flops.speedup(rows))


def run(args: argparse.Namespace, cluster: Cluster) -> dict:
    ctxs = contexts(args)
    log.info("contexts: [%s]", ", ".join(str(c) for c in ctxs))
    net, layers = build_net(args, ctxs)
    train, val = make_data(args, cluster)
    if args.test_io:
        report = data.read_report(train)
        log.info("test-io: %(images)d images, %(img_per_s).1f samples/sec", report)
        return report
    if args.init_from:
        init_from_dense(args, net, layers, train, val, ctxs)
    trainer = make_trainer(args, net, cluster, train.num_batches, ctxs)
    states = trainer if cluster.saves_trainer_states else None
    if args.load_epoch is not None:
        checkpoint.load(args.model_prefix, args.load_epoch, net, args.network, states is not None, ctxs)
    cluster.start(trainer, args.batch_size)  # after the weights are loaded: the others take rank 0's
    if args.load_epoch is not None:
        if states is not None:
            checkpoint.load_trainer(args.model_prefix, args.load_epoch, trainer, args.trust_states)
        log.info("resumed from %s-%04d%s", args.model_prefix, args.load_epoch,
                 "" if states else " (weights only: dist_async keeps optimizer state on the servers)")
    metric, result = fit.metrics(args.num_classes), {}
    for epoch in range(args.load_epoch or 0, args.num_epochs):
        seed_everything(args.seed * 1000 + epoch)  # dropout of epoch e is the same after a resume
        fit.train_epoch(epoch, net, trainer, train, ctxs, metric, cluster.step_size(args.batch_size),
                        args.disp_batches)
        result = lcnn_report(epoch, layers)
        if val is not None:
            result["validation"] = dict(fit.evaluate(net, val, ctxs, metric))
            for name, value in result["validation"].items():
                log.info("Epoch[%d] Validation-%s=%f", epoch, name, value)
        if args.model_prefix and cluster.rank == 0:
            meta = dict(network=args.network, num_classes=args.num_classes, dataset=args.dataset,
                        image_shape=list(args.image_shape), model_kwargs=model_kwargs(args),
                        lookup_layers=lnn.lookup_config(net), **result)
            checkpoint.save(args.model_prefix, epoch + 1, net, states, meta)
    return result


def load_trained(network: str, params: str, classes: int, ctxs: List[mx.Context], **kwargs):
    """``network`` (model keyword arguments ``kwargs``) with the parameters of ``params``; a
    ``ValueError`` when they belong to another network."""
    net = get_model(network, classes=classes, **kwargs)
    net.initialize(ctx=ctxs)
    checkpoint.load_params(net, params, network, ctxs)
    return net


def dense_counterpart(args: argparse.Namespace) -> str:
    """The dense network ``--init-from`` holds: ``--init-network``, or ``--network`` without
    its ``_lcnn_*`` suffix."""
    return args.init_network or args.network.split("_lcnn")[0]


def init_from_dense(args: argparse.Namespace, net, layers, train, val, ctxs: List[mx.Context]) -> None:
    """Start the LCNN ``net`` from the trained dense network of ``--init-from``: each layer
    factorised (logged), BatchNorm statistics re-estimated on training batches, then the
    accuracy and counted speedup before any weight is trained."""
    name = dense_counterpart(args)
    dense = load_trained(name, args.init_from, args.num_classes, ctxs)
    conversion.initialize_from_dense(net, dense, args.init_density)
    used = fit.recalibrate_batchnorm(net, train, ctxs, args.init_bn_batches)
    log.info("BatchNorm statistics re-estimated on %d training batches", used)
    report = lcnn_report(-1, layers)
    if val is not None:
        for metric, value in fit.evaluate(net, val, ctxs, fit.metrics(args.num_classes)):
            log.info("initialised from %s: Validation-%s=%f", args.init_from, metric, value)
    log.info("initialised from %s: counted speedup=%.2f", args.init_from, report["speedup"])


def seed_everything(seed: int) -> None:
    mx.random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    random.seed(seed)


def _exit(args: argparse.Namespace, status: int) -> int:
    """A failed distributed worker leaves at once: ps-lite's shutdown at interpreter exit
    would wait for peers that are waiting for it."""
    if args.kv_store.startswith("dist"):
        logging.shutdown()
        os._exit(status)
    return status


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    log.info("arguments: %s", vars(args))
    seed_everything(args.seed)
    start = time.time()
    try:
        cluster = Cluster.create(args)
        run(args, cluster)
        cluster.close()  # not after an error: the other workers would wait for this one
    except ValueError as e:  # bad input found after start-up (labels, checkpoints)
        log.error("%s", e)
        return _exit(args, 2)
    except BaseException:
        log.exception("training failed")
        return _exit(args, 1)
    log.info("done in %.1f s", time.time() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
