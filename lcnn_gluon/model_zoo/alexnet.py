"""AlexNet in the authors' LCNN shape, dense and LCNN.

64-192-384-256-256 convolutions (11/4, 5, 3, 3, 3), BatchNorm + ReLU after each,
max-pooling after conv1, conv2, conv5; fc6 4096 on the 256x6x6 map, fc7 4096,
each with BatchNorm, ReLU and dropout 0.5; a dense classifier. In the LCNN
presets fc6 is a 6x6 lookup convolution and fc7 a 1x1 lookup
(:class:`~lcnn_gluon.nn.LookupDense`); the dense network uses fully connected
layers there (the same function, and the fastest dense form). The BatchNorms of
fc6 and fc7 are :class:`~.batchnorm.FlatBatchNorm`: the same ``(B, 4096)`` input
in every form (an AVX-512-only crash of MXNet's oneDNN BatchNorm, docs/platform.md).

| preset | k: conv1..conv5, fc6, fc7 | lambda | initial sparsity |
| --- | --- | --- | --- |
| fast | 3, 30, 30, 30, 30, 512, 512 | 0.3 | 0.01 |
| accurate | 3, 500, 500, 500, 500, 1024, 1024 | 0.1 | 0.01 |
"""
from typing import Optional, Sequence

from mxnet.gluon import HybridBlock, nn

from .. import nn as lnn
from . import register_model
from .batchnorm import FlatBatchNorm

FAST = dict(dictionary_sizes=(3, 30, 30, 30, 30, 512, 512), lambda_=0.3, initial_sparsity=0.01)
ACCURATE = dict(dictionary_sizes=(3, 500, 500, 500, 500, 1024, 1024), lambda_=0.1,
                initial_sparsity=0.01)
# (channels, kernel, stride, padding, input channels, max-pool after)
CONVS = ((64, 11, 4, 2, 3, True), (192, 5, 1, 2, 64, True), (384, 3, 1, 1, 192, False),
         (256, 3, 1, 1, 384, False), (256, 3, 1, 1, 256, True))


class AlexNet(HybridBlock):
    """Input ``(B, 3, 224, 224)``, output ``(B, classes)`` scores."""

    def __init__(self, classes: int = 1000, dictionary_sizes: Optional[Sequence[int]] = None,
                 lambda_: float = 0.0, initial_sparsity: float = 0.01, **kwargs):
        super().__init__(**kwargs)
        ks = list(dictionary_sizes) if dictionary_sizes else [None] * 7
        if len(ks) != 7:
            raise ValueError(f"AlexNet has 7 lookup layers, got {len(ks)} dictionary sizes")
        lookup = dict(lambda_=lambda_, initial_sparsity=initial_sparsity)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            for (channels, kernel, stride, pad, in_ch, pool), k in zip(CONVS, ks):
                self.features.add(lnn.conv2d(channels, kernel, stride, pad, dictionary_size=k,
                                             in_channels=in_ch, **lookup),
                                  nn.BatchNorm(), nn.Activation("relu"))
                if pool:
                    self.features.add(nn.MaxPool2D(3, 2))
            # fc6 (6x6 on the 6x6 map) and fc7; FlatBatchNorm makes their outputs (B, 4096)
            self.features.add(nn.Dense(4096, use_bias=False) if ks[5] is None else
                              lnn.conv2d(4096, 6, dictionary_size=ks[5], in_channels=256, **lookup))
            self.features.add(FlatBatchNorm(in_channels=4096), nn.Activation("relu"), nn.Dropout(0.5))
            self.features.add(nn.Dense(4096, use_bias=False) if ks[6] is None else
                              lnn.LookupDense(4096, dictionary_size=ks[6], use_bias=False, in_units=4096,
                                              **lookup))
            self.features.add(FlatBatchNorm(in_channels=4096), nn.Activation("relu"), nn.Dropout(0.5))
            self.output = nn.Dense(classes)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


@register_model
def alexnet(classes: int = 1000, **kwargs) -> HybridBlock:
    return AlexNet(classes, **kwargs)


@register_model
def alexnet_lcnn_fast(classes: int = 1000, **kwargs) -> HybridBlock:
    return AlexNet(classes, **dict(FAST, **kwargs))


@register_model
def alexnet_lcnn_accurate(classes: int = 1000, **kwargs) -> HybridBlock:
    return AlexNet(classes, **dict(ACCURATE, **kwargs))
