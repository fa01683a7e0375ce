"""LeNet for 28x28 MNIST, dense and LCNN.

conv1 5x5/20 - pool - conv2 5x5/50 - pool - fc1 500 (a 4x4 kernel on the 4x4 map)
- classifier; BatchNorm + ReLU after each of the first three, as in the
authors' models (fc1's is a :class:`~.batchnorm.FlatBatchNorm`, as AlexNet's fc
layers). The LCNN presets are ours (the paper has no LeNet), chosen on
the 5,000-digit sample with the recipe of ``benchmarks/bench_accuracy.py`` (30
epochs, batch 64, SGD lr 0.1 decayed 10x at epochs 20 and 25): "fast" counts
about 15x fewer multiplications than dense at the same accuracy, "accurate"
about 5x (benchmarks/RESULTS.md). conv1 has one input channel, so k = 1 and
only P's sparsity saves there.

| preset | k: conv1, conv2, fc1 | lambda | initial sparsity |
| --- | --- | --- | --- |
| fast | 1, 8, 16 | 0.02 | 0.1 |
| accurate | 1, 16, 64 | 0.01 | 0.1 |
"""
from typing import Optional, Sequence

from mxnet.gluon import HybridBlock, nn

from .. import nn as lnn
from . import register_model
from .batchnorm import FlatBatchNorm

FAST = dict(dictionary_sizes=(1, 8, 16), lambda_=0.02, initial_sparsity=0.1)
ACCURATE = dict(dictionary_sizes=(1, 16, 64), lambda_=0.01, initial_sparsity=0.1)


class LeNet(HybridBlock):
    """Input ``(B, 1, 28, 28)``, output ``(B, classes)`` scores."""

    def __init__(self, classes: int = 10, dictionary_sizes: Optional[Sequence[int]] = None,
                 lambda_: float = 0.0, initial_sparsity: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        ks = list(dictionary_sizes) if dictionary_sizes else [None] * 3
        if len(ks) != 3:
            raise ValueError(f"LeNet has 3 lookup layers, got {len(ks)} dictionary sizes")
        lookup = dict(lambda_=lambda_, initial_sparsity=initial_sparsity)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            for channels, kernel, k, in_ch, pool in ((20, 5, ks[0], 1, True), (50, 5, ks[1], 20, True),
                                                      (500, 4, ks[2], 50, False)):
                self.features.add(lnn.conv2d(channels, kernel, dictionary_size=k, in_channels=in_ch,
                                             **lookup),
                                  nn.BatchNorm() if pool else FlatBatchNorm(in_channels=channels),
                                  nn.Activation("relu"))
                if pool:
                    self.features.add(nn.MaxPool2D(2))
            self.output = nn.Dense(classes)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


@register_model
def lenet(classes: int = 10, **kwargs) -> HybridBlock:
    return LeNet(classes, **kwargs)


@register_model
def lenet_lcnn_fast(classes: int = 10, **kwargs) -> HybridBlock:
    return LeNet(classes, **dict(FAST, **kwargs))


@register_model
def lenet_lcnn_accurate(classes: int = 10, **kwargs) -> HybridBlock:
    return LeNet(classes, **dict(ACCURATE, **kwargs))
