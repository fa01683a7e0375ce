"""The inference form of an LCNN network, and its export for MXNet runtimes.

``sparsify(net, data_shape)`` returns a copy of ``net`` in which every lookup layer is the C++
operator ``lcnn_lookup_conv`` (``lcnn_gluon.ops``) with its live P packed by
:class:`lcnn_gluon.lookup.PackedLookup`, except the layers whose lookup form counts more
multiplications than a dense layer on that input (``lookup.cost.runs_dense``), which
become that dense layer, ``W = P x D``; a BatchNorm right after a lookup layer is folded into its
coefficients and bias, and a ReLU and a max-pooling after that are fused into the
operator (oneDNN's pooling is ten times slower on the plain layout a custom
operator returns than on its own); in a ResNet basic block the last lookup layer
also adds the shortcut and applies the block's ReLU. ``densify(net)``
gives the same function with plain ``Convolution``/``FullyConnected`` weights
``W = P x D`` instead, for runtimes without the library.

    python -m lcnn_gluon.export --network lenet_lcnn_fast --params out/fast-0030.params \\
        --image-shape 1,28,28 --output out/fast [--dense]

writes ``PREFIX-symbol.json``, ``PREFIX-0000.params`` and ``PREFIX-meta.json``
(input shape, preprocessing, the library needed), then reloads the export with
``SymbolBlock.imports`` and checks it against the training form.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import warnings
from typing import Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn
from mxnet.gluon.model_zoo.vision.resnet import BasicBlockV1

from . import atomic, checkpoint, data, flops, ops, tree
from .lookup.layers import LookupConv2D, LookupDense, _Lookup
from .lookup.packed import PackedLookup

log = logging.getLogger(__name__)


def pack_csr(lookup: np.ndarray, scale: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
    """Deprecated: ``(indptr, indices, coefs)`` of :meth:`lcnn_gluon.lookup.PackedLookup.pack`."""
    n, k = lookup.shape[:2]
    packed = PackedLookup.pack(lookup, np.zeros((k, 1), np.float32), None, scale,
                               None if scale is None else np.zeros(n, np.float32))
    return packed.indptr, packed.indices, packed.coefs


class SparseLookup(HybridBlock):
    """A lookup layer in inference form: the ``lcnn_lookup_conv`` operator on CSR lookups.

    Input and output as the lookup layer it replaces (a dense layer's input is
    flattened and treated as a 1x1 map).
    """

    def __init__(self, layer: _Lookup, scale: Optional[np.ndarray], shift: Optional[np.ndarray],
                 relu: bool, pool: Optional[nn.MaxPool2D] = None, flatten: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.residual = False  # see add_residual
        self.dense = isinstance(layer, LookupDense)
        self.flatten = self.dense or flatten  # the output as (N, features)
        conv = not self.dense
        self.attrs = dict(kernel=layer.kernel, stride=layer.strides if conv else (1, 1),
                          pad=layer.padding if conv else (0, 0), num_filter=layer.channels,
                          act="relu" if relu else "none")
        if pool is not None:
            self.attrs.update(pool_kernel=pool._kwargs["kernel"], pool_stride=pool._kwargs["stride"],
                              pool_pad=pool._kwargs["pad"])
        packed = PackedLookup.pack(layer.effective_lookup().asnumpy(), layer.dictionary.data().asnumpy(),
                                   layer.bias.data().asnumpy() if layer.bias is not None else None,
                                   scale, shift)
        with self.name_scope():
            for name, value in packed.arrays().items():
                param = self.params.get(name, shape=value.shape, dtype=value.dtype, grad_req="null",
                                        differentiable=False)
                param.initialize(init=mx.init.Constant(0))
                param.set_data(mx.nd.array(value, dtype=value.dtype))
                setattr(self, name, param)
        self.density = packed.density

    def add_residual(self) -> None:
        """From now on take a second input, the shortcut, added before the ReLU:
        ``relu(layer(x) + shortcut)`` (the end of a ResNet basic block)."""
        if self.flatten or "pool_kernel" in self.attrs or self.attrs["act"] != "none":
            raise ValueError(f"{self.name}: a residual needs a convolution without act or pooling")
        self.residual = True
        self.attrs.update(act="relu", residual=1)

    def hybrid_forward(self, F, x, *shortcut, dictionary, indptr, indices, coefs, bias):
        if self.dense:
            x = F.reshape(x, shape=(0, -1, 1, 1))
        y = F.lcnn_lookup_conv(x, dictionary, indptr, indices, coefs, bias, *shortcut, **self.attrs)
        return F.flatten(y) if self.flatten else y


class SparseResidualBlock(HybridBlock):
    """``relu(body(x) + shortcut(x))`` with the body's last lookup layer adding the shortcut
    and applying the ReLU itself (no separate elementwise passes over the block's output)."""

    def __init__(self, body: list, tail: SparseLookup, downsample: Optional[HybridBlock], **kwargs):
        super().__init__(**kwargs)
        tail.add_residual()
        with self.name_scope():
            self.body = nn.HybridSequential(prefix="")
            self.body.add(*body)
            self.tail, self.downsample = tail, downsample

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.tail(self.body(x), shortcut)


def residual_parts(block: HybridBlock) -> Optional[Tuple[nn.HybridSequential, Optional[HybridBlock]]]:
    """``(body, shortcut)`` of a block that computes ``relu(body(x) + shortcut(x))`` (``shortcut``
    None: the identity), or None for any other block.

    The protocol: such a block declares itself with a method ``lcnn_residual()`` returning its
    sequential ``body`` and its ``shortcut`` block (docs/design.md); Gluon's ``BasicBlockV1``
    is declared here on its behalf. Export then lets the body's last lookup layer add the
    shortcut and apply the ReLU.
    """
    declared = getattr(block, "lcnn_residual", None)
    if callable(declared):
        return declared()
    if isinstance(block, BasicBlockV1):
        return block.body, block.downsample
    return None


def _residual_blocks(block: HybridBlock) -> None:
    """Replace each residual block below ``block`` (:func:`residual_parts`) whose body ends
    with a plain sparse lookup by a :class:`SparseResidualBlock`."""
    for key, child in list(block._children.items()):
        parts = residual_parts(child)
        body = list(parts[0]._children.values()) if parts is not None else []
        tail = body[-1] if body else None
        if (isinstance(tail, SparseLookup) and not tail.flatten and not tail.residual
                and tail.attrs["act"] == "none" and "pool_kernel" not in tail.attrs):
            tree.replace_child(block, key, SparseResidualBlock(body[:-1], tail, parts[1],
                                                               prefix=child.prefix))
        else:
            _residual_blocks(child)


def _fold(bn: nn.BatchNorm) -> Tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with ``bn(y) = y * scale + shift`` at inference."""
    gamma = (np.ones(bn.gamma.shape, np.float32) if bn._kwargs.get("fix_gamma")
             else bn.gamma.data().asnumpy())
    scale = gamma / np.sqrt(bn.running_var.data().asnumpy() + bn._kwargs["eps"])
    return scale, bn.beta.data().asnumpy() - bn.running_mean.data().asnumpy() * scale


@dataclasses.dataclass
class Fusion:
    """What the operator absorbs of the blocks right after a lookup layer, in this order:
    the layer's own activation or a BatchNorm (folded into coefficients and bias), a ReLU,
    a max-pooling. ``absorbed`` counts the following blocks taken."""

    bn: Optional[nn.BatchNorm] = None
    relu: bool = False
    pool: Optional[nn.MaxPool2D] = None
    absorbed: int = 0


def _is_channel_batchnorm(block: HybridBlock, channels: int) -> bool:
    return (isinstance(block, nn.BatchNorm) and block._kwargs.get("axis", 1) == 1
            and block.gamma.shape[0] == channels)


def _is_relu(block: HybridBlock) -> bool:
    return isinstance(block, nn.Activation) and block._act_type == "relu"


def _is_fusable_pool(block: HybridBlock, layer: _Lookup) -> bool:
    kw = block._kwargs if isinstance(block, nn.MaxPool2D) else {}
    return (bool(kw) and kw.get("pooling_convention") == "valid" and not kw.get("global_pool")
            and kw.get("layout", "NCHW") in (None, "NCHW") and not isinstance(layer, LookupDense))


def fusion(layer: _Lookup, following: list) -> Fusion:
    """What of ``following`` (the blocks after ``layer`` in a sequential container) the
    operator computes exactly: y = pool(relu(bn(layer(x)))) with each part optional.

    A BatchNorm is folded only when nothing non-linear comes before it: not after the
    layer's own activation (``Conv2D(..., activation='relu')`` then BatchNorm keeps its
    BatchNorm). A layer activation other than ReLU absorbs nothing (it runs after the
    operator as its own block). Max-pooling commutes with nothing here: it is fused only
    where it comes last.
    """
    if layer.activation not in (None, "relu"):
        return Fusion()
    rest, found = list(following), Fusion(relu=layer.activation == "relu")
    if not found.relu and rest and _is_channel_batchnorm(rest[0], layer.channels):
        found.bn = rest.pop(0)
        found.relu = bool(getattr(found.bn, "fuse_relu", False))
    if not found.relu and rest and _is_relu(rest[0]):
        found.relu = bool(rest.pop(0))
    if rest and _is_fusable_pool(rest[0], layer):
        found.pool = rest.pop(0)
    found.absorbed = len(following) - len(rest)
    return found


def _convert_children(block: HybridBlock, make) -> None:
    """Replace each lookup layer below ``block`` by ``make(layer, following siblings)``, which
    returns the new block and how many of the following blocks it absorbed (sequential
    containers only: elsewhere registration order need not be execution order)."""
    items = list(block._children.items())
    sequential = isinstance(block, (nn.HybridSequential, nn.Sequential))
    for i, (key, child) in enumerate(items):
        if not isinstance(child, _Lookup):
            _convert_children(child, make)
            continue
        new, absorbed = make(child, [c for _, c in items[i + 1:i + 4]] if sequential else [])
        tree.replace_child(block, key, new)
        for j in range(absorbed):  # a sequential container just runs its remaining children
            del block._children[items[i + 1 + j][0]]


def dense_layer(layer: _Lookup) -> HybridBlock:
    """A plain ``Conv2D`` / ``Dense`` layer computing ``layer`` with weight ``W = P x D``."""
    w = layer.dense_weight()
    kw = dict(activation=layer.activation, use_bias=layer.bias is not None, prefix=layer.prefix)
    if isinstance(layer, LookupConv2D):
        dense = nn.Conv2D(layer.channels, layer.kernel, layer.strides, layer.padding,
                          in_channels=w.shape[1], **kw)
    else:
        dense = nn.Dense(layer.channels, in_units=w.shape[1], **kw)
    dense.initialize()
    dense.weight.set_data(w)
    if layer.bias is not None:
        dense.bias.set_data(layer.bias.data())
    return dense


def sparsify(net: HybridBlock, data_shape: Optional[Tuple[int, ...]] = None) -> HybridBlock:
    """A copy of ``net`` (initialised, not hybridized) running the C++ sparse operator.

    With ``data_shape`` (C, H, W of one input), a lookup layer that counts more
    multiplications than a dense layer on its input (``lookup.cost.runs_dense``, as
    :mod:`lcnn_gluon.flops` counts it) runs as that dense layer instead; without it, every
    lookup layer runs on the operator. ``net`` may be trained and hybridized; it is not changed.
    """
    ops.load()
    net = tree.copy_structure(net, shared=(_Lookup,))
    as_dense = set()
    if data_shape is not None:
        layers = flops.trace(net, data_shape)
        as_dense = {lay.block for lay, row in zip(layers, flops.count(layers)) if row.as_dense}

    def make(layer, following):
        if layer in as_dense:
            return dense_layer(layer), 0
        found = fusion(layer, following)
        scale, shift = _fold(found.bn) if found.bn is not None else (None, None)
        new = SparseLookup(layer, scale, shift, found.relu, found.pool,
                           flatten=getattr(found.bn, "flattens", False), prefix=layer.prefix)
        if layer.activation not in (None, "relu"):  # not fusable: its own block after the operator
            seq = nn.HybridSequential(prefix="")
            seq.add(new, nn.Activation(layer.activation))
            new = seq
        return new, found.absorbed
    _convert_children(net, make)
    _residual_blocks(net)
    return net


def densify(net: HybridBlock) -> HybridBlock:
    """A copy of ``net`` with each lookup layer as a plain layer of weight ``W = P x D``.

    ``net`` may be trained and hybridized; it is not changed.
    """
    net = tree.copy_structure(net, shared=(_Lookup,))
    _convert_children(net, lambda layer, following: (dense_layer(layer), 0))
    return net


CHECK_RTOL = 1e-4  # exported against training form: max error over the largest output


class ExportError(ValueError):
    """The exported model does not compute what the training form computes."""


def _files(prefix: str) -> dict:
    return {"symbol": prefix + "-symbol.json", "params": prefix + "-0000.params",
            "meta": prefix + "-meta.json"}


def export(net: HybridBlock, prefix: str, data_shape: tuple, meta: dict,
           reference: Optional[HybridBlock] = None, rtol: float = CHECK_RTOL) -> dict:
    """Hybridize and export ``net`` for one ``(1,) + data_shape`` input, with the meta JSON.

    The files are written under temporary names and renamed when complete (the meta
    JSON last). With ``reference`` (the network in training form), the export is first
    reloaded and compared with it (:func:`check`); an :class:`ExportError` then leaves
    nothing at ``prefix``. Returns the meta written (with ``check``, the error measured).
    """
    net.hybridize(static_alloc=True, static_shape=True)
    net(mx.nd.zeros((1,) + tuple(data_shape))).wait_to_read()
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    tmp_prefix = atomic.temporary_name(prefix)
    staged, final = _files(tmp_prefix), _files(prefix)
    try:
        net.export(tmp_prefix, epoch=0)
        meta = dict(meta, input_shape=[1] + list(data_shape), symbol=final["symbol"],
                    params=final["params"], mxnet=mx.__version__)
        checkpoint.write_json(staged["meta"], meta)
        if reference is not None:
            meta["check"] = check(tmp_prefix, reference, data_shape, rtol)
            checkpoint.write_json(staged["meta"], meta)
        for kind in ("symbol", "params", "meta"):  # the meta JSON last: it marks the export complete
            atomic.fsync_path(staged[kind])
            os.replace(staged[kind], final[kind])
        atomic.fsync_path(os.path.dirname(os.path.abspath(prefix)))
    finally:
        for path in staged.values():
            if os.path.exists(path):
                atomic.remove_quietly(path)
    return meta


def check(prefix: str, reference: HybridBlock, data_shape: tuple, rtol: float = CHECK_RTOL) -> float:
    """Max ``|exported - reference|`` over the largest ``|reference|`` output, on a seeded random
    batch of 2; :class:`ExportError` when above ``rtol`` or when either output is not finite."""
    x = mx.nd.array(np.random.RandomState(0).standard_normal((2,) + tuple(data_shape)), dtype="float32")
    want = reference(x).asnumpy()
    got = load_exported(prefix)(x).asnumpy()
    for name, out in (("training form", want), ("exported model", got)):
        if not np.isfinite(out).all():
            raise ExportError(f"the {name}'s output is not finite (nan or inf) on random input: "
                              "nothing exported")
    err = float(np.abs(got - want).max() / max(float(np.abs(want).max()), np.finfo(np.float32).tiny))
    if not err <= rtol:
        raise ExportError(f"the exported model differs from the training form by {err:.2e} "
                          f"(relative to its largest output; tolerance {rtol:.0e}): nothing exported")
    return err


def load_exported(prefix: str) -> HybridBlock:
    """``SymbolBlock.imports`` of an export (loading the operator library when it needs it)."""
    with open(prefix + "-meta.json") as f:
        meta = json.load(f)
    if meta.get("library"):
        ops.load()
    with warnings.catch_warnings():  # MXNet warns that the input's dtype is not in the symbol
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        return nn.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")


def main(argv=None) -> None:
    from .model_zoo import get_model, list_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--params", required=True, help="trained parameters (PREFIX-NNNN.params)")
    parser.add_argument("--image-shape", help="C,H,W (default: from the checkpoint's metadata)")
    parser.add_argument("--output", required=True, help="prefix of the exported files")
    parser.add_argument("--dense", action="store_true", help="plain MXNet operators, W = P x D")
    parser.add_argument("--num-classes", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    shape = None
    try:
        meta = checkpoint.read_meta(args.params)
        shape = (data.parse_image_shape(args.image_shape) if args.image_shape
                 else tuple(meta.get("image_shape", ())))
        if len(shape) != 3:
            raise ValueError("--image-shape C,H,W is needed (the checkpoint has no metadata)")
        net = get_model(args.network, classes=args.num_classes or meta.get("num_classes", 1000),
                        **meta.get("model_kwargs", {}))
        net.initialize()
        checkpoint.load_params(net, args.params, args.network)
        inference = densify(net) if args.dense else sparsify(net, shape)
        dataset = meta.get("dataset") or ("mnist" if shape[0] == 1 else "imagenet")
        preset = data.get_preset(dataset)
        written = export(inference, args.output, shape, dict(
            network=args.network, dataset=dataset, mean=list(preset.mean), std=list(preset.std),
            resize=preset.resize, library=None if args.dense else os.path.basename(ops.path()),
            operator=None if args.dense else ops.OP_NAME), reference=net)
    except mx.base.MXNetError as e:  # the network does not run on this input shape, or I/O in MXNet
        parser.error(f"{args.output}: cannot export {args.network} for input {shape}: "
                     f"{str(e).strip().splitlines()[-1]}")
    except (ValueError, OSError, RuntimeError) as e:
        parser.error(f"{args.output}: {e}" if isinstance(e, (ExportError, OSError)) else str(e))
    log.info("exported %s and %s; max |exported - training form| = %.2e of the largest output",
             written["symbol"], written["params"], written["check"])


if __name__ == "__main__":
    main()
