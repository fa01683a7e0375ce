"""Counting multiplications the paper's way, per layer, for any Gluon network.

A dense convolution costs ``out_elements * m * kh * kw`` (per group), a dense
fully connected layer its weight count, a lookup layer what
:mod:`lcnn_gluon.lookup.cost` says (the dictionary's product over the padded input
plus the lookups, or the dense count where inference runs the layer dense);
everything else counts zero. All counts are for one image (batch 1).

    python -m lcnn_gluon.flops --network resnet18_lcnn_fast [--params FILE] [--image-shape 3,224,224]
prints a table per layer and ends with ``speedup: X``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import List, Optional, Sequence, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from . import tree
from .lookup import cost
from .lookup.layers import LookupConv2D, LookupDense, _Lookup, is_fully_connected

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Layer:
    """A layer that multiplies, with the shapes it saw for one image."""

    name: str
    block: HybridBlock
    in_shape: Tuple[int, ...]  # (C, H, W) or (features,)
    out_shape: Tuple[int, ...]


def trace(net: HybridBlock, data_shape: Sequence[int], ctx: Optional[mx.Context] = None) -> List[Layer]:
    """Run one image of shape ``data_shape`` (C, H, W) through ``net`` and record each
    convolution, dense and lookup layer with its input and output shapes.

    ``net`` must be initialised and not hybridized (hooks do not fire inside a
    cached graph). Lookup layers run in their two-stage form meanwhile, which is
    cheap at batch 1.
    """
    if getattr(net, "_active", False):
        raise ValueError("trace() needs a network that is not hybridized yet")
    layers, handles, forms = [], [], {}

    def hook(block, inputs, output):
        layers.append(Layer(block.name, block, tuple(inputs[0].shape[1:]), tuple(output.shape[1:])))

    for block in tree.blocks(net):
        if isinstance(block, (nn.Conv2D, nn.Dense, _Lookup)):
            handles.append(block.register_forward_hook(hook))
            if isinstance(block, _Lookup):
                forms[block] = block.form
                block._set_form("two_stage")
    try:
        net(mx.nd.zeros((1,) + tuple(data_shape), ctx=ctx or mx.cpu())).wait_to_read()
    finally:
        for h in handles:
            h.detach()
        for block, form in forms.items():
            block._set_form(form)
    return layers


@dataclasses.dataclass
class Count:
    """Multiplications of one layer for one image."""

    name: str
    kind: str
    dense: int  # as a dense layer of the same shape
    lcnn: int  # as inference runs it (equal to dense for non-lookup layers)
    density: Optional[float]  # fraction of non-zeros of P, lookup layers only
    as_dense: bool = False  # a lookup layer that inference runs dense (cost.runs_dense)


def count(layers: Sequence[Layer], densities: Optional[dict] = None) -> List[Count]:
    """Multiplication counts from a :func:`trace`, with each lookup layer's current density
    (or ``densities[layer name]`` where given), each layer in the form inference runs it."""
    densities = densities or {}
    rows = []
    for layer in layers:
        b, out = layer.block, int(np.prod(layer.out_shape))
        if isinstance(b, _Lookup):
            d = densities[layer.name] if layer.name in densities else b.density()
            dense = cost.dense_mults(b, layer.in_shape, out)
            as_dense = cost.runs_dense(b, layer.in_shape, out, d)
            rows.append(Count(layer.name, "lookup dense" if isinstance(b, LookupDense) else "lookup conv",
                              dense, dense if as_dense else cost.lookup_mults(b, layer.in_shape, out, d),
                              d, as_dense))
        elif isinstance(b, nn.Conv2D):
            per_output = int(np.prod(b.weight.shape[1:]))  # (m / groups) * kh * kw
            rows.append(Count(layer.name, "conv", out * per_output, out * per_output, None))
        else:
            rows.append(Count(layer.name, "dense", b.weight.data().size, b.weight.data().size, None))
    return rows


def speedup(rows: Sequence[Count]) -> float:
    """Dense multiplications over LCNN multiplications, whole network."""
    return sum(r.dense for r in rows) / max(1, sum(r.lcnn for r in rows))


def choose_forms(layers: Sequence[Layer], batch_size: int) -> dict:
    """Set each lookup layer's training form to the cheaper one for ``batch_size``.

    ``composed`` builds ``W = P x D`` once per step (``n*k*kh*kw*m``) and runs a
    dense convolution; ``two_stage`` runs the 1x1 dictionary convolution and a
    ``kh x kw`` convolution over ``k`` channels, both per image. Call before
    ``hybridize()``. A convolution whose kernel covers its whole unpadded input
    (AlexNet's fc6) also runs as a fully connected layer. Returns ``{layer name: form}``.
    """
    chosen = {}
    for layer in layers:
        b = layer.block
        if not isinstance(b, _Lookup):
            continue
        conv = isinstance(b, LookupConv2D)
        composed, two_stage = cost.training_costs(b, layer.in_shape, int(np.prod(layer.out_shape)),
                                                  batch_size)
        b._set_form("two_stage" if two_stage < composed else "composed")
        if conv:
            b.as_fc = is_fully_connected(b, layer.in_shape)
        chosen[layer.name] = b.form + (" as fc" if conv and b.as_fc else "")
    return chosen


def format_table(rows: Sequence[Count]) -> str:
    lines = [f"{'layer':<36}{'kind':<14}{'dense mults':>16}{'LCNN mults':>16}{'density':>10}"]
    for r in rows:
        density = f"{r.density:.4f}" if r.density is not None else "-"
        runs = "  (runs dense)" if r.as_dense else ""
        lines.append(f"{r.name:<36}{r.kind:<14}{r.dense:>16,}{r.lcnn:>16,}{density:>10}{runs}")
    lines.append(f"{'total':<50}{sum(r.dense for r in rows):>16,}{sum(r.lcnn for r in rows):>16,}")
    lines.append(f"speedup: {speedup(rows):.2f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    from . import checkpoint, data
    from .model_zoo import get_model, list_models

    parser = argparse.ArgumentParser(description="Count multiplications per layer (the paper's "
                                                 "formula) and the LCNN speedup.")
    parser.add_argument("--network", required=True, help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--params", help="trained parameters (densities are read from them)")
    parser.add_argument("--image-shape", help="C,H,W (default: 1,28,28 for lenet*, else 3,224,224)")
    parser.add_argument("--num-classes", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        shape = (data.parse_image_shape(args.image_shape) if args.image_shape
                 else (1, 28, 28) if args.network.startswith("lenet") else (3, 224, 224))
        meta = checkpoint.read_meta(args.params) if args.params else {}
        classes = args.num_classes or meta.get("num_classes") or (10 if shape[0] == 1 else 1000)
        net = get_model(args.network, classes=classes, **meta.get("model_kwargs", {}))
        net.initialize()
        if args.params:
            checkpoint.load_params(net, args.params, args.network)
        rows = count(trace(net, shape))
    except (ValueError, OSError, json.JSONDecodeError) as e:
        parser.error(str(e))
    print(format_table(rows))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
