"""ResNet-18 (v1, as GluonCV's ``resnet18_v1``), dense and LCNN.

In the LCNN presets conv1 and every 3x3 convolution of the residual blocks are
lookup layers, with one dictionary size per stage; the 1x1 shortcut
convolutions and the classifier stay dense, as in the paper.

| preset | k: conv1, stage1..stage4 | lambda | initial sparsity |
| --- | --- | --- | --- |
| fast | 3, 16, 32, 64, 128 | 0.3 | 0.001 |
| accurate | 3, 128, 256, 512, 1024 | 0.1 | 0.001 |
"""
from typing import Optional, Sequence

from mxnet.gluon import HybridBlock, nn

from .. import nn as lnn
from . import register_model

FAST = dict(dictionary_sizes=(3, 16, 32, 64, 128), lambda_=0.3, initial_sparsity=0.001)
ACCURATE = dict(dictionary_sizes=(3, 128, 256, 512, 1024), lambda_=0.1, initial_sparsity=0.001)


class BasicBlock(HybridBlock):
    """Two 3x3 convolutions with BatchNorm, a shortcut (1x1 + BN when the shape changes), ReLU."""

    def __init__(self, channels: int, stride: int, in_channels: int, dictionary_size: Optional[int],
                 lookup: dict, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(lnn.conv2d(channels, 3, stride, 1, dictionary_size=dictionary_size,
                                     in_channels=in_channels, **lookup),
                          nn.BatchNorm(), nn.Activation("relu"),
                          lnn.conv2d(channels, 3, 1, 1, dictionary_size=dictionary_size,
                                     in_channels=channels, **lookup),
                          nn.BatchNorm())
            self.downsample = None
            if stride != 1 or in_channels != channels:
                self.downsample = nn.HybridSequential(prefix="")
                self.downsample.add(nn.Conv2D(channels, 1, stride, use_bias=False,
                                              in_channels=in_channels), nn.BatchNorm())

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        return F.Activation(self.body(x) + shortcut, act_type="relu")

    def lcnn_residual(self):
        """``relu(body(x) + shortcut(x))``: the export protocol (lcnn_gluon.export.residual_parts)."""
        return self.body, self.downsample


class ResNet18(HybridBlock):
    """Input ``(B, 3, 224, 224)``, output ``(B, classes)`` scores."""

    def __init__(self, classes: int = 1000, dictionary_sizes: Optional[Sequence[int]] = None,
                 lambda_: float = 0.0, initial_sparsity: float = 0.001, **kwargs):
        super().__init__(**kwargs)
        ks = list(dictionary_sizes) if dictionary_sizes else [None] * 5
        if len(ks) != 5:
            raise ValueError(f"ResNet-18 takes 5 dictionary sizes (conv1, 4 stages), got {len(ks)}")
        lookup = dict(lambda_=lambda_, initial_sparsity=initial_sparsity)
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            self.features.add(lnn.conv2d(64, 7, 2, 3, dictionary_size=ks[0], in_channels=3, **lookup),
                              nn.BatchNorm(), nn.Activation("relu"), nn.MaxPool2D(3, 2, 1))
            in_ch = 64
            for stage, (channels, k) in enumerate(zip((64, 128, 256, 512), ks[1:])):
                for i in range(2):
                    self.features.add(BasicBlock(channels, 2 if stage and not i else 1, in_ch, k, lookup))
                    in_ch = channels
            self.features.add(nn.GlobalAvgPool2D())
            self.output = nn.Dense(classes, in_units=512)

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


@register_model
def resnet18(classes: int = 1000, **kwargs) -> HybridBlock:
    return ResNet18(classes, **kwargs)


@register_model
def resnet18_lcnn_fast(classes: int = 1000, **kwargs) -> HybridBlock:
    return ResNet18(classes, **dict(FAST, **kwargs))


@register_model
def resnet18_lcnn_accurate(classes: int = 1000, **kwargs) -> HybridBlock:
    return ResNet18(classes, **dict(ACCURATE, **kwargs))
