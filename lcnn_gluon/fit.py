"""The training loop: one step, evaluation, an epoch, with MXNet ``fit.py``-style logs.

Log lines (read by MXNet's ``tools/parse_log.py``)::

    Epoch[3] Batch [100]	Speed: 1234.56 samples/sec	accuracy=0.912000	top_k_accuracy_5=0.990000
    Epoch[3] Train-accuracy=0.915000
    Epoch[3] Train-loss=0.271000
    Epoch[3] Time cost=12.345
    Epoch[3] Validation-accuracy=0.975000
"""
from __future__ import annotations

import logging
import time
from typing import List, Sequence

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from . import flops
from . import nn as lnn

log = logging.getLogger(__name__)


INITIALIZER = dict(rnd_type="gaussian", factor_type="in", magnitude=2)  # He initialisation


def prepare(net: gluon.HybridBlock, data_shape: Sequence[int], batch_size: int,
            ctxs: List[mx.Context]) -> List[flops.Layer]:
    """Make a freshly built network ready to train, the one way the library does: initialised
    on ``ctxs`` (He-scaled Xavier), each lookup layer's form chosen for the batch each device
    sees, hybridized with static memory. Returns its layer trace (for counting)."""
    net.initialize(mx.init.Xavier(**INITIALIZER), ctx=ctxs)
    layers = flops.trace(net, data_shape, ctx=ctxs[0])
    forms = flops.choose_forms(layers, max(1, batch_size // len(ctxs)))
    if forms:
        log.info("lookup layer forms for batch %d: %s", batch_size, forms)
    net.hybridize(static_alloc=True, static_shape=True)
    return layers


def lr_scheduler(mode: str, base_lr: float, steps_per_epoch: int, num_epochs: int,
                 step_epochs: Sequence[int], factor: float, warmup_epochs: float,
                 warmup_lr: float) -> mx.lr_scheduler.LRScheduler:
    """Step (``factor`` at each of ``step_epochs``) or cosine decay, after a linear warm-up."""
    warmup = int(warmup_epochs * steps_per_epoch)
    common = dict(base_lr=base_lr, warmup_steps=warmup, warmup_begin_lr=warmup_lr)
    if mode == "cosine":
        return mx.lr_scheduler.CosineScheduler(max(num_epochs * steps_per_epoch, warmup + 1),
                                               final_lr=0.0, **common)
    steps = [e * steps_per_epoch for e in step_epochs if e * steps_per_epoch > warmup]
    if not steps:  # MultiFactorScheduler needs one step: put it past the end
        steps = [num_epochs * steps_per_epoch + 1]
    return mx.lr_scheduler.MultiFactorScheduler(steps, factor, **common)


def metrics(num_classes: int) -> mx.metric.CompositeEvalMetric:
    composite = mx.metric.CompositeEvalMetric()
    composite.add(mx.metric.Accuracy())
    if num_classes > 5:
        composite.add(mx.metric.TopKAccuracy(5))
    return composite


def _split(batch: mx.io.DataBatch, ctxs: List[mx.Context]):
    """Data, labels and sample weights (0 for padding) split over the devices."""
    n = batch.data[0].shape[0]
    weight = mx.nd.ones((n,))
    if batch.pad:
        weight[n - batch.pad:] = 0
    load = gluon.utils.split_and_load
    return (load(batch.data[0], ctxs, even_split=False), load(batch.label[0], ctxs, even_split=False),
            load(weight, ctxs, even_split=False))


def _gather(arrays) -> mx.nd.NDArray:
    return mx.nd.concat(*[a.as_in_context(mx.cpu()) for a in arrays], dim=0)


def _update(metric: mx.metric.EvalMetric, labels, outputs, pad: int) -> None:
    label, out = _gather(labels), _gather(outputs)
    real = label.shape[0] - pad
    metric.update([label[:real]], [out[:real]])


def train_step(net: gluon.Block, trainer: gluon.Trainer, loss_fn: gluon.loss.Loss,
               layers: Sequence, batch: mx.io.DataBatch, ctxs: List[mx.Context],
               step_size: int) -> tuple:
    """Forward, backward, L1 on the lookups, update, prune. Returns outputs, labels and
    per-sample losses (lists, one entry per device).

    ``step_size`` is what ``trainer.step`` divides the summed gradients by: the
    global batch size (this worker's batch times the number of workers that sum).
    """
    outputs, labels, losses = forward_backward(net, loss_fn, batch, ctxs)
    if lnn.updates_lookups(trainer):  # L1, mask, SGD and pruning in one pass per lookup tensor
        trainer.step(step_size)
    else:
        lnn.add_l1_grad(layers, batch.data[0].shape[0] / len(ctxs))
        trainer.step(step_size)
        lnn.prune(layers)
    return outputs, labels, losses


def forward_backward(net: gluon.Block, loss_fn: gluon.loss.Loss, batch: mx.io.DataBatch,
                     ctxs: List[mx.Context]) -> tuple:
    """The batch split over the devices, forward and backward (padding weighted 0). Returns
    outputs, labels and per-sample losses (lists, one entry per device)."""
    datas, labels, weights = _split(batch, ctxs)
    with autograd.record():
        outputs = [net(x) for x in datas]
        losses = [loss_fn(o, y, w) for o, y, w in zip(outputs, labels, weights)]
    autograd.backward(losses)
    return outputs, labels, losses


def recalibrate_batchnorm(net: gluon.Block, data: mx.io.DataIter, ctxs: List[mx.Context], batches: int) -> int:
    """Re-estimate every BatchNorm's running statistics on ``batches`` training batches, without
    changing a weight: after layers were replaced, the statistics of the old ones no longer
    describe their outputs. (A backward pass runs too: MXNet's oneDNN BatchNorm updates its
    running statistics there; the gradients are overwritten by the next training step.)
    Returns the batches used."""
    data.reset()
    used = 0
    for batch in data:
        with autograd.record():
            zeros = [net(x).sum() * 0 for x in _split(batch, ctxs)[0]]
        autograd.backward(zeros)
        used += 1
        if used >= batches:
            break
    mx.nd.waitall()
    data.reset()
    return used


def evaluate(net: gluon.Block, data: mx.io.DataIter, ctxs: List[mx.Context],
             metric: mx.metric.EvalMetric) -> List[tuple]:
    """(name, value) of ``metric`` over one pass of ``data``."""
    metric.reset()
    data.reset()
    for batch in data:
        datas, labels, _ = _split(batch, ctxs)
        _update(metric, labels, [net(x) for x in datas], batch.pad)
    return metric.get_name_value()


def train_epoch(epoch: int, net: gluon.Block, trainer: gluon.Trainer, data: mx.io.DataIter,
                ctxs: List[mx.Context], metric: mx.metric.EvalMetric, step_size: int,
                disp_batches: int) -> float:
    """One epoch over ``data``; logs speed and metrics every ``disp_batches``. Returns seconds."""
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    layers = lnn.lookup_layers(net)
    mean_loss = mx.metric.Loss("loss")
    metric.reset()
    data.reset()
    start = tic = time.time()
    bar = tqdm(total=getattr(data, "num_batches", None), desc=f"epoch {epoch}", unit="batch",
               disable=None, leave=False)
    for i, batch in enumerate(data):
        outputs, labels, losses = train_step(net, trainer, loss_fn, layers, batch, ctxs, step_size)
        _update(metric, labels, outputs, batch.pad)
        mean_loss.update(None, [_gather(losses)[:batch.data[0].shape[0] - batch.pad]])
        bar.update(1)
        if disp_batches and (i + 1) % disp_batches == 0:
            speed = disp_batches * batch.data[0].shape[0] / (time.time() - tic)
            values = "\t".join(f"{n}={v:f}" for n, v in metric.get_name_value())
            log.info("Epoch[%d] Batch [%d]\tSpeed: %.2f samples/sec\t%s", epoch, i + 1, speed, values)
            tic = time.time()
    bar.close()
    for name, value in metric.get_name_value() + mean_loss.get_name_value():
        log.info("Epoch[%d] Train-%s=%f", epoch, name, value)
    elapsed = time.time() - start
    log.info("Epoch[%d] Time cost=%.3f", epoch, elapsed)
    return elapsed
