"""Where this process sits in a training job: one process, or a worker of a KVStore cluster."""
from __future__ import annotations

import argparse
import logging
from typing import Optional

from mxnet import gluon

log = logging.getLogger(__name__)


def add_dist_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Distributed training (--kv-store dist_*)")
    g.add_argument("--gc-type", default="none", choices=["none", "2bit"], help="gradient compression")
    g.add_argument("--gc-threshold", type=float, default=0.5, help="2-bit compression threshold")


class Cluster:
    """Rank, number of workers and the KVStore; builds the Trainer to match."""

    def __init__(self, kvstore, rank: int = 0, num_workers: int = 1):
        self.kvstore, self.rank, self.num_workers = kvstore, rank, num_workers

    @classmethod
    def create(cls, args: argparse.Namespace) -> "Cluster":
        return cls(args.kv_store)

    def trainer(self, params, optimizer: str, optimizer_params: dict) -> gluon.Trainer:
        return gluon.Trainer(params, optimizer, optimizer_params, kvstore=self.kvstore)

    def step_size(self, batch_size: int) -> int:
        """What trainer.step() divides summed gradients by."""
        return batch_size * self.num_workers

    def start(self, net: gluon.Block, trainer: gluon.Trainer) -> None:
        """Called once before the first step."""

    def close(self, error: Optional[BaseException] = None) -> None:
        """Called once at the end."""
