"""Applying the lookup rule (:mod:`.rule`) around an update.

The training loop calls, around ``trainer.step(batch_size)``::

    add_l1_grad(layers, samples_per_device)   # lambda * eps * sign(P), see below
    trainer.step(batch_size)
    prune(layers)                              # retire entries at or below eps; zero them

or nothing extra when the trainer's optimizer is :class:`LookupSGD` (what
:func:`optimizer_for` picks for ``sgd`` on CPU): it does all three in its step.
"""
from __future__ import annotations

from typing import Iterable, Optional

import mxnet as mx

from . import rule
from .layers import _Lookup


def add_l1_grad(layers: Iterable[_Lookup], samples_per_device: float) -> None:
    """Add the L1 term to P's gradient, on entries above eps.

    Gluon's ``trainer.step(batch_size)`` divides gradients by the global batch size
    after summing them over devices (and workers); each device adds the term times
    the number of samples it processed, so the update sees exactly the rule's strength.
    """
    for layer in layers:
        if not layer.lambda_:
            continue
        strength = rule.l1_strength(layer.lambda_, layer.eps) * samples_per_device
        for p, g in zip(layer.lookup.list_data(), layer.lookup.list_grad()):
            rule.add_l1(g, p, layer.eps, strength)


def prune(layers: Iterable[_Lookup]) -> None:
    """After an update: retire entries now at or below eps and zero every retired entry,
    on every device's copy (``alive`` only goes from 1 to 0)."""
    for layer in layers:
        for p, a in zip(layer.lookup.list_data(), layer.alive.list_data()):
            rule.prune(p, a, layer.eps)


@mx.optimizer.register
class LookupSGD(mx.optimizer.SGD):
    """SGD with momentum that applies the lookup layers' rule in its own step.

    For each lookup tensor P (on CPU, with the operator library): L1, gradient mask,
    momentum SGD with weight decay and pruning in one C++ pass (:func:`.rule.sgd_step`),
    the same arithmetic as ``add_l1_grad`` + SGD + ``prune`` without their ~8 passes
    over P. Every other parameter: MXNet's SGD. Registered as ``"lookupsgd"``.
    """

    def __init__(self, momentum: float = 0.9, **kwargs):
        if momentum <= 0:
            raise ValueError("LookupSGD needs momentum > 0: use 'sgd' with add_l1_grad and prune")
        super().__init__(momentum=momentum, **kwargs)

    def _lookup_layer(self, index: int) -> Optional[_Lookup]:
        ref = getattr(self.param_dict.get(index), "lookup_layer", None)
        return ref() if ref is not None else None

    def _update_impl(self, indices, weights, grads, states, multi_precision=False):
        if not isinstance(indices, (tuple, list)):
            indices, weights, grads, states = [indices], [weights], [grads], [states]
        mine = [j for j, i in enumerate(indices) if self._lookup_layer(i) is not None]
        if mine:
            if multi_precision or not rule.kernels(weights[j].context for j in mine):
                raise RuntimeError("LookupSGD runs on CPU in float32 with the operator library "
                                   "(lcnn_gluon.ops); elsewhere use 'sgd' with add_l1_grad and prune")
            picked = [indices[j] for j in mine]
            self._update_count(picked)
            for j, lr, wd in zip(mine, self._get_lrs(picked), self._get_wds(picked)):
                layer = self._lookup_layer(indices[j])
                rule.sgd_step(weights[j], grads[j], states[j], layer.alive.data(weights[j].context),
                              layer.eps, layer.lambda_, lr=lr, wd=wd, momentum=self.momentum,
                              rescale_grad=self.rescale_grad, clip_gradient=self.clip_gradient or -1.0)
        rest = sorted(set(range(len(indices))) - set(mine))
        if rest:
            super()._update_impl(*([x[j] for j in rest] for x in (indices, weights, grads, states)),
                                 multi_precision=multi_precision)


def optimizer_for(name: str, ctxs: Iterable[mx.Context], momentum: float,
                  update_on_kvstore: bool = False) -> str:
    """``"lookupsgd"`` where ``"sgd"`` can run as :class:`LookupSGD` (CPU, momentum, the
    library, updates on this process), else ``name`` (then the loop calls add_l1_grad/prune)."""
    fusable = name == "sgd" and momentum > 0 and not update_on_kvstore and rule.kernels(ctxs)
    return "lookupsgd" if fusable else name


def updates_lookups(trainer: mx.gluon.Trainer) -> bool:
    """Whether ``trainer``'s optimizer applies L1 and pruning itself (:class:`LookupSGD`)."""
    return isinstance(trainer._optimizer, LookupSGD)
