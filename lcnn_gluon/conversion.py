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

The other layers keep their parameters. A converted layer whose dense weight holds values
(a trained or loaded network) starts from it: ``D`` and a sparse ``P`` with ``P x D ~ W``
(:mod:`lcnn_gluon.lookup.factorize`), and its bias; the log gives each layer's relative
error and density (``from_weights=False``: start fresh instead). A layer not yet
initialised is left for ``initialize()``. :func:`initialize_from_dense` starts a zoo LCNN
from a separate dense network of the same architecture (``lenet`` for ``lenet_lcnn_fast``).
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from . import tree
from .lookup import rule
from .lookup.factorize import Factorization, factorize, shape_for
from .lookup.layers import LookupConv2D, LookupDense, _Lookup, lookup_layers

log = logging.getLogger(__name__)

DictionarySize = Union[int, Dict[str, int], Callable[[HybridBlock], Optional[int]]]


@dataclasses.dataclass
class Report:
    converted: List[Tuple[str, int]] = dataclasses.field(default_factory=list)  # (layer, k)
    kept: List[Tuple[str, str]] = dataclasses.field(default_factory=list)  # (layer, reason)
    initialised: Dict[str, Factorization] = dataclasses.field(default_factory=dict)  # from weights

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layers, kept {len(self.kept)} dense"]
        lines += [f"  lookup  {name}  k={k}" + _fit(self.initialised.get(name)) for name, k in self.converted]
        lines += [f"  dense   {name}  ({reason})" for name, reason in self.kept]
        return "\n".join(lines)


def _fit(f: Optional[Factorization]) -> str:
    return "" if f is None else f"  from W: error {f.relative_error:.3f}, density {f.density:.3f}"


DEFAULT_DENSITY = 0.25  # fraction of P kept when a lookup layer starts from a dense weight


def initialize_lookup(layer: _Lookup, weight: np.ndarray, bias: Optional[np.ndarray], density: float,
                      ctx=None) -> Factorization:
    """Set ``layer``'s dictionary, lookup tensor, kept-mask and bias from a trained dense
    ``weight`` (``(n, m, kh, kw)``, or ``(n, m * kh * kw)`` of a ``Dense`` in front of a
    convolution-shaped lookup); returns how good ``P x D`` is. Initialises the layer if needed."""
    shape = shape_for(weight.shape, layer.lookup.shape)
    m = layer.dictionary.shape[1]
    if shape[0] != layer.channels or tuple(shape[2:]) != tuple(layer.lookup.shape[2:]) or m not in (0, shape[1]):
        raise ValueError(f"{layer.name}: a dense weight of shape {weight.shape} does not fit a lookup layer "
                         f"of {layer.channels} outputs, {m or '?'} inputs, kernel {layer.lookup.shape[2:]}")
    f = factorize(weight.reshape(shape), layer.dictionary_size, layer.eps, density)
    d_shape = (layer.dictionary_size, f.dictionary.shape[1]) + layer.dictionary.shape[2:]
    layer.dictionary.shape = d_shape
    layer.in_channels = layer.in_channels or d_shape[1]
    if layer.lookup._data is None:
        layer.initialize(ctx=ctx)
    layer.dictionary.set_data(mx.nd.array(f.dictionary.reshape(d_shape)))
    layer.lookup.set_data(mx.nd.array(f.lookup))
    layer.alive.set_data(mx.nd.array(f.lookup != 0, dtype=rule.ALIVE_DTYPE))
    if layer.bias is not None:
        layer.bias.set_data(mx.nd.array(bias if bias is not None else np.zeros(layer.channels)))
    log.info("%s from its dense weight: relative error %.4f, density %.4f", layer.name, f.relative_error,
             f.density)
    return f


def initialize_from_dense(net: HybridBlock, dense: HybridBlock, density: float = DEFAULT_DENSITY) -> Report:
    """Start ``net`` (an LCNN network, initialised) from the trained ``dense`` network of the same
    architecture: each lookup layer from the dense layer at the same place (factorised), every
    other parameter copied. A ``ValueError`` names the first place where the two differ."""
    report = Report()
    dense_blocks = dict(tree.named_blocks(dense))
    for path, block in tree.named_blocks(net):
        if not isinstance(block, _Lookup):
            continue
        other = dense_blocks.get(path)
        if not isinstance(other, (nn.Conv2D, nn.Dense)):
            raise ValueError(f"the dense network has {type(other).__name__} at {path}, where the LCNN "
                             f"network has a lookup layer")
        bias = other.bias.data().asnumpy() if other.bias is not None else None
        report.initialised[block.name] = initialize_lookup(block, other.weight.data().asnumpy(), bias, density)
        report.converted.append((block.name, block.dictionary_size))
    ours, theirs = net._collect_params_with_prefix(), dense._collect_params_with_prefix()
    lookup_params = {name for name, p in ours.items()
                     if any(p is q for b in lookup_layers(net) for q in b.params.values())}
    for name, param in ours.items():
        if name in lookup_params:
            continue
        fits = name in theirs and len(theirs[name].shape) == len(param.shape) and all(
            a in (0, b) for a, b in zip(param.shape, theirs[name].shape))  # 0: not inferred yet
        if not fits:
            raise ValueError(f"the dense network has no parameter {name} of shape {param.shape}")
        param.set_data(theirs[name].data())
    return report


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
            initial_sparsity: float = 0.01, classifier: Optional[str] = None,
            from_weights: Optional[bool] = None, density: float = DEFAULT_DENSITY) -> Report:
    """Replace ``net``'s convolution and dense layers by lookup layers, in place.

    ``dictionary_size``: one ``k`` for all layers, ``{layer name: k}``, or a function
    of the layer returning ``k`` or None (keep it dense). ``classifier``: the name of
    the layer to keep dense as the classifier (default: the last one registered).
    ``from_weights``: start each lookup layer from the weight it replaces
    (:func:`initialize_lookup`, about ``density`` of P kept): None (default) where that
    weight holds values, True everywhere (an error where it does not), False nowhere.
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
        lookup = _lookup_for(block, k, lambda_, initial_sparsity)
        tree.replace_child(parent, key, lookup)
        report.converted.append((block.name, k))
        has_values = block.weight._data is not None
        if from_weights or (from_weights is None and has_values):
            if not has_values:
                raise ValueError(f"from_weights: {block.name} has no trained weight (initialise and "
                                 "train, or load, the network first)")
            bias = block.bias.data().asnumpy() if block.bias is not None else None
            report.initialised[block.name] = initialize_lookup(
                lookup, block.weight.data().asnumpy(), bias, density, block.weight.list_ctx())
    return report
