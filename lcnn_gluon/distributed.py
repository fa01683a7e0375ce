"""Where this process sits in a training job: one process, or a worker of a KVStore cluster.

Distributed training goes through MXNet's KVStore (ps-lite), started by
``tools/launch.py``. What this module takes care of (docs/platform.md):

* MXNet *sums* gradients over workers: ``step_size`` is the global batch for
  ``dist_sync``/``dist_device_sync``; ``dist_async`` applies each worker's push
  on its own, so there it is the worker's batch;
* sync modes update on the workers (``update_on_kvstore=False``: optimizer state
  stays local and is checkpointed); ``dist_async`` must update on the servers;
* all workers start from rank 0's weights, sent without the races of MXNet's
  own broadcast (see ``Cluster.start``);
* 2-bit compression needs separate push and pull (Gluon's ``pushpull`` refuses it).
"""
from __future__ import annotations

import argparse
import logging

import mxnet as mx
import numpy as np
from mxnet import gluon

log = logging.getLogger(__name__)


def add_dist_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Distributed training (--kv-store dist_*)")
    g.add_argument("--gc-type", default="none", choices=["none", "2bit"], help="gradient compression")
    g.add_argument("--gc-threshold", type=float, default=0.5, help="2-bit compression threshold")


def _pull_into(kvstore, key: int, arrays, priority: int = 0) -> None:
    """Pull ``key`` into ``arrays`` through a default-layout buffer: an inference-mode
    forward on CPU lets oneDNN reorder weights in place, and the distributed KVStore
    cannot write into such arrays ("can't generate TBlob for MKLDNN data")."""
    buf = mx.nd.zeros(arrays[0].shape, dtype=arrays[0].dtype)
    kvstore.pull(key, buf, priority=priority)
    for a in arrays:
        a[:] = buf


class PushPullTrainer(gluon.Trainer):
    """Gluon's Trainer exchanging gradients with ``push`` then ``pull`` (dense parameters)."""

    def _allreduce_grads(self):
        if not self._kvstore:
            return
        for i, param in enumerate(self._params):
            if param.grad_req == "null":
                continue
            self._kvstore.push(i, param.list_grad(), priority=-i)
            if self._update_on_kvstore:
                _pull_into(self._kvstore, i, param.list_data(), priority=-i)
            else:
                self._kvstore.pull(i, param.list_grad(), priority=-i)


class Cluster:
    """Rank, number of workers and the KVStore; builds the Trainer to match."""

    def __init__(self, kvstore, rank: int = 0, num_workers: int = 1):
        self.kvstore, self.rank, self.num_workers = kvstore, rank, num_workers
        self.distributed = not isinstance(kvstore, str)
        self.update_on_kvstore = self.distributed and "async" in kvstore.type

    @classmethod
    def create(cls, args: argparse.Namespace) -> "Cluster":
        if not args.kv_store.startswith("dist"):
            if args.gc_type != "none":
                raise ValueError("--gc-type needs a dist_* --kv-store")
            return cls(args.kv_store)
        kv = mx.kv.create(args.kv_store)
        if args.gc_type != "none":
            kv.set_gradient_compression({"type": args.gc_type, "threshold": args.gc_threshold})
        log.info("worker %d of %d, kvstore %s", kv.rank, kv.num_workers, kv.type)
        return cls(kv, kv.rank, kv.num_workers)

    def trainer(self, params, optimizer: str, optimizer_params: dict) -> gluon.Trainer:
        if not self.distributed:  # several devices: each updates its own copy (docs/platform.md)
            return gluon.Trainer(params, optimizer, optimizer_params, kvstore=self.kvstore,
                                 update_on_kvstore=False)
        return PushPullTrainer(params, optimizer, optimizer_params, kvstore=self.kvstore,
                               update_on_kvstore=self.update_on_kvstore)

    def step_size(self, batch_size: int) -> int:
        """What ``trainer.step()`` divides the summed gradients by."""
        return batch_size if self.update_on_kvstore else batch_size * self.num_workers

    @property
    def saves_trainer_states(self) -> bool:
        """Whether optimizer state is on this process (not on the servers) to checkpoint."""
        return not self.update_on_kvstore

    def start(self, trainer: gluon.Trainer, batch_size: int) -> None:
        """Before the first step: every worker takes rank 0's weights.

        Not Gluon's ``broadcast``: on CPU, MXNet's ``KVStoreDist::Init`` can let another
        worker's pull reach a server before rank 0's initial push ("init N first"), and
        the first gradient exchange can race the initial pull. So: init all keys, wait
        until rank 0's pushes are acknowledged, barrier, pull, wait, barrier.
        """
        if not self.distributed:
            return
        # dist_async sends the optimizer to the servers now: with step()'s gradient scale
        trainer._check_and_rescale_grad(trainer._scale / self.step_size(batch_size))
        if not trainer._kv_initialized:
            trainer._init_kvstore()
        # not the kept-masks (uint8: the parameter servers take floating point only); every
        # worker holds the same ones already (initialised to 1 or loaded from one checkpoint)
        # and the same updates keep them equal
        params = [p for p in trainer._params_to_init if not p._deferred_init
                  and np.issubdtype(np.dtype(p.dtype), np.floating)]
        keys = [trainer._param2idx[p.name] for p in params]
        if keys:  # values via numpy: default layout (see _pull_into)
            self.kvstore.init(keys, [mx.nd.array(p.data().asnumpy(), dtype=p.dtype) for p in params])
            mx.nd.waitall()
            self.kvstore._barrier()
            for key, p in zip(keys, params):
                _pull_into(self.kvstore, key, p.list_data(), priority=-key)
            mx.nd.waitall()
        trainer._params_to_init = [p for p in trainer._params_to_init if p._deferred_init]
        self.kvstore._barrier()

    def close(self) -> None:
        """After the last step: let every worker finish before the servers shut down."""
        if self.distributed:
            mx.nd.waitall()
            self.kvstore._barrier()
