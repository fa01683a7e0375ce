"""Turn any Gluon (or GluonCV) CNN into an LCNN.

Every ``nn.Conv2D`` and ``nn.Dense`` except the final classifier becomes a lookup
layer with the same shape, strides, padding, bias and activation, under the same
parameter prefix. Layers stay dense, and are listed in the report with the
reason, when a lookup would not fit or not save anything: grouped or depthwise
and dilated convolutions, non-NCHW layouts, ``Dense(flatten=False)``, layers
whose dictionary would be as large as ``n * kh * kw``, and the classifier.

    net = gluoncv.model_zoo.get_model("resnet18_v1", pretrained=False, classes=100)
    report = lcnn_gluon.convert(net, dictionary_size=32, lambda_=0.3)
    print(report)

Converted layers are freshly initialised; the others keep their parameters.
Convert before ``initialize()``/``hybridize()`` or re-initialise afterwards.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Tuple, Union

from mxnet.gluon import HybridBlock, nn

from . import tree
from .nn import LookupConv2D, LookupDense

DictionarySize = Union[int, Dict[str, int], Callable[[HybridBlock], Optional[int]]]


@dataclasses.dataclass
class Report:
    converted: List[Tuple[str, int]] = dataclasses.field(default_factory=list)  # (layer, k)
    kept: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (layer, reason)

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layers, kept {len(self.kept)} dense"]
        lines += [f"  lookup  {name}  k={k}" for name, k in self.converted]
        lines += [f"  dense   {name}  ({reason})" for name, reason in self.kept]
        return "\n".join(lines)


def _dictionary_size(spec: DictionarySize, block: HybridBlock) -> Optional[int]:
    if callable(spec):
        return spec(block)
    if isinstance(spec, dict):
        return spec.get(block.name)
    return int(spec)


def _why_dense(block: HybridBlock, k: Optional[int]) -> Optional[str]:
    if k is None:
        return "no dictionary size given for it"
    if isinstance(block, nn.Dense):
        if not block._flatten:
            return "Dense(flatten=False)"
        n, kernel = block._units, (1, 1)
    else:
        kw = block._kwargs
        if kw["num_group"] != 1:
            return f"grouped convolution ({kw['num_group']} groups)"
        if tuple(kw["dilate"]) != (1,) * len(kw["dilate"]):
            return f"dilation {kw['dilate']}"
        if kw.get("layout", "NCHW") != "NCHW" or len(kw["kernel"]) != 2:
            return f"layout {kw.get('layout')}"
        n, kernel = kw["num_filter"], tuple(kw["kernel"])
    if k >= n * kernel[0] * kernel[1]:
        return f"k={k} >= n*kh*kw={n * kernel[0] * kernel[1]}: a lookup saves nothing"
    return None


def _lookup_for(block: HybridBlock, k: int, lambda_: float, initial_sparsity: float) -> HybridBlock:
    act = block.act._act_type if block.act is not None else None
    common = dict(dictionary_size=k, lambda_=lambda_, initial_sparsity=initial_sparsity,
                  use_bias=block.bias is not None, activation=act, prefix=block.prefix)
    if isinstance(block, nn.Dense):
        return LookupDense(block._units, in_units=block._in_units, **common)
    kw = block._kwargs
    return LookupConv2D(kw["num_filter"], tuple(kw["kernel"]), tuple(kw["stride"]), tuple(kw["pad"]),
                        in_channels=block._in_channels, **common)


def convert(net: HybridBlock, dictionary_size: DictionarySize, lambda_: float = 0.0,
            initial_sparsity: float = 0.01, classifier: Optional[str] = None) -> Report:
    """Replace ``net``'s convolution and dense layers by lookup layers, in place.

    ``dictionary_size``: one ``k`` for all layers, ``{layer name: k}``, or a function
    of the layer returning ``k`` or None (keep it dense). ``classifier``: the name of
    the layer to keep dense as the classifier (default: the last one registered).
    Returns what was converted and what was kept, with reasons.
    """
    layers = [(parent, key, b) for parent, key, b in tree.walk(net) if isinstance(b, (nn.Conv2D, nn.Dense))]
    if not layers:
        raise ValueError(f"{type(net).__name__} has no Conv2D or Dense layer to convert")
    classifier = classifier or layers[-1][2].name
    report = Report()
    for parent, key, block in layers:
        if block.name == classifier:
            report.kept.append((block.name, "classifier"))
            continue
        k = _dictionary_size(dictionary_size, block)
        reason = _why_dense(block, k)
        if reason:
            report.kept.append((block.name, reason))
            continue
        tree.replace_child(parent, key, _lookup_for(block, k, lambda_, initial_sparsity))
        report.converted.append((block.name, k))
    return report
