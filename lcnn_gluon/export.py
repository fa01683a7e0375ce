"""The inference form of an LCNN network, and its export for MXNet runtimes.

``sparsify(net, data_shape)`` returns a copy of ``net`` in which every lookup layer is the C++
operator ``lcnn_lookup_conv`` (``lcnn_gluon.ops``) with its live P packed by
:class:`lcnn_gluon.lookup.PackedLookup`, except the layers whose lookup form counts more
multiplications than a dense layer on that input (``lookup.cost.runs_dense``), which
become that dense layer, ``W = P x D`` (with a BatchNorm and a ReLU right after it folded in);
a BatchNorm right after a lookup layer is folded into its
coefficients and bias, and a ReLU and a max-pooling after that are fused into the
operator (oneDNN's pooling is ten times slower on the plain layout a custom
operator returns than on its own); in a ResNet basic block the last lookup layer
also adds the shortcut and applies the block's ReLU; a plain ``Dense`` layer (the
classifier), and a strided 1x1 convolution with an output map of at least ``OPERATOR_MIN_PIXELS``
positions (ResNet's shortcuts at 224x224), run on the operator as ``D = W``, ``P = I``
(``plain_on_operator``). ``densify(net)``
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
import ctypes
import json
import logging
import os
import warnings
from typing import Callable, Optional, Tuple

import mxnet as mx
import numpy as np
from mxnet.gluon import HybridBlock, nn

from . import atomic, chain, checkpoint, data, flops, identities, ops, tree
from .lookup.layers import _Lookup
from .lookup.packed import PackedLookup
from .sparse_blocks import (SparseLookup, SparseResidualBlock, dense_layer, dense_layer_for, plain_on_operator,
                            residual_parts, sparse_lookup_for)

__all__ = ["SparseLookup", "SparseResidualBlock", "dense_layer", "residual_parts", "sparsify",
           "densify", "export", "check", "load_exported", "Predictor", "ExportError"]

log = logging.getLogger(__name__)


def pack_csr(lookup: np.ndarray, scale: Optional[np.ndarray] = None) -> Tuple[np.ndarray, ...]:
    """Deprecated: ``(indptr, indices, coefs)`` of :meth:`lcnn_gluon.lookup.PackedLookup.pack`."""
    n, k = lookup.shape[:2]
    packed = PackedLookup.pack(lookup, np.zeros((k, 1), np.float32), None, scale,
                               None if scale is None else np.zeros(n, np.float32))
    return packed.indptr, packed.indices, packed.coefs


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


def _convert_children(block: HybridBlock, make) -> None:
    """Replace each block below ``block`` that ``make(child, following siblings)`` converts:
    it returns the new block and how many of the following blocks it absorbed (sequential
    containers only: elsewhere registration order need not be execution order), or None to
    look inside ``child`` instead."""
    items = list(block._children.items())
    sequential = isinstance(block, (nn.HybridSequential, nn.Sequential))
    i = 0
    while i < len(items):
        key, child = items[i]
        made = make(child, [c for _, c in items[i + 1:i + 4]] if sequential else [])
        if made is None:
            _convert_children(child, make)
            i += 1
            continue
        new, absorbed = made
        tree.replace_child(block, key, new)
        for j in range(absorbed):  # a sequential container just runs its remaining children
            del block._children[items[i + 1 + j][0]]
        i += 1 + absorbed


# A plain strided 1x1 convolution (a ResNet shortcut) runs on the operator when its output map
# has at least this many positions. ResNet-18's shortcuts with their BatchNorm at batch 16, one
# thread (run 27, Zen 4): 56x56 -> 28x28 5.21 ms in oneDNN on the operator's plain layout, 2.44 on
# the operator; 28x28 -> 14x14 2.18 against 1.77; 14x14 -> 7x7 1.22 against 1.99 (at batch 1 all
# within 0.03 ms). The last one on the operator too (run 58, Intel Xeon; whole exports, calls
# alternating in one process, the rounds' medians): ResNet-18-fast 0.03 at one thread 0.94-1.00 of the time at
# batch 1, 0.97-1.02 at batch 16; ResNet-18-accurate 0.05 at two threads, batch 16, 0.96-1.03.
# Its product is still slower than oneDNN's at batch 16 (2.0 ms a call against about 1.5), but the
# network then runs as one chain between its input and its pooling, without the operators between.
# Stride-1 1x1 convolutions were not measured and stay in MXNet.
OPERATOR_MIN_PIXELS = 7 * 7


def _strided_convs_on_large_maps(layers: list) -> set:
    """The plain strided convolutions among traced ``layers`` whose output maps have at least
    ``OPERATOR_MIN_PIXELS`` positions (``plain_on_operator`` checks the rest of the shape)."""
    return {lay.block for lay in layers if isinstance(lay.block, nn.Conv2D)
            and lay.block._kwargs["stride"] != (1, 1) and int(np.prod(lay.out_shape[1:])) >= OPERATOR_MIN_PIXELS}


def sparsify(net: HybridBlock, data_shape: Optional[Tuple[int, ...]] = None) -> HybridBlock:
    """A copy of ``net`` (initialised, not hybridized) running the C++ sparse operator.

    Plain ``Dense`` layers run on the operator too (:func:`plain_on_operator`).
    With ``data_shape`` (C, H, W of one input), a lookup layer that counts more
    multiplications than a dense layer on its input (``lookup.cost.runs_dense``, as
    :mod:`lcnn_gluon.flops` counts it) runs as that dense layer instead, and plain strided 1x1
    convolutions with output maps of at least ``OPERATOR_MIN_PIXELS`` positions run on the
    operator; without it, every lookup layer runs on the operator and every convolution in
    MXNet. ``net`` may be trained and hybridized; it is not changed.
    """
    ops.load()
    net = tree.copy_structure(net, shared=(_Lookup,))
    as_dense, large_maps = set(), set()
    if data_shape is not None:
        layers = flops.trace(net, data_shape)
        as_dense = {lay.block for lay, row in zip(layers, flops.count(layers)) if row.as_dense}
        large_maps = _strided_convs_on_large_maps(layers)

    def make(block, following):
        if isinstance(block, _Lookup):
            return dense_layer_for(block, following) if block in as_dense else sparse_lookup_for(block, following)
        if isinstance(block, nn.Dense) or block in large_maps:
            return plain_on_operator(block, following)
        return None
    _convert_children(net, make)
    _residual_blocks(net)
    return net


def densify(net: HybridBlock) -> HybridBlock:
    """A copy of ``net`` with each lookup layer as a plain layer of weight ``W = P x D``.

    ``net`` may be trained and hybridized; it is not changed.
    """
    net = tree.copy_structure(net, shared=(_Lookup,))
    _convert_children(net, lambda block, following: (dense_layer(block), 0) if isinstance(block, _Lookup) else None)
    return net


CHECK_RTOL = 1e-4  # exported against training form: max error over the largest output


class ExportError(ValueError):
    """The exported model does not compute what the training form computes."""


def _files(prefix: str) -> dict:
    return {"symbol": prefix + "-symbol.json", "params": prefix + "-0000.params",
            "meta": prefix + "-meta.json"}


def export(net: HybridBlock, prefix: str, data_shape: tuple, meta: dict,
           reference: Optional[HybridBlock] = None, rtol: float = CHECK_RTOL, chains: bool = True) -> dict:
    """Hybridize and export ``net`` for one ``(1,) + data_shape`` input, with the meta JSON.
    Nodes that pass their input through unchanged at inference are taken out
    (:mod:`.identities`); with ``chains``, runs of lookup layers become one operator each
    (:mod:`.chain`).

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
        identities.drop_identities_file(staged["symbol"], data_shape)
        if chains:
            meta["lookup_chains"] = chain.chain_symbol_file(staged["symbol"])
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


def _meta(prefix: str) -> dict:
    """The export's meta JSON, or ``{}`` for an export without one (a plain ``HybridBlock.export``)."""
    if not os.path.exists(prefix + "-meta.json"):
        return {}
    with open(prefix + "-meta.json") as f:
        return json.load(f)


def _load_library_for(prefix: str) -> dict:
    """Load the operator library when the export's meta JSON names one; returns the meta."""
    meta = _meta(prefix)
    if meta.get("library"):
        ops.load()
    return meta


def load_exported(prefix: str) -> HybridBlock:
    """``SymbolBlock.imports`` of an export (loading the operator library when it needs it)."""
    _load_library_for(prefix)
    with warnings.catch_warnings():  # MXNet warns that the input's dtype is not in the symbol
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        return nn.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")


SUBGRAPH_VERBOSE = "MXNET_SUBGRAPH_VERBOSE"  # MXNet's switch for its graph passes' log lines


# MXNet 1.9's executor and static CachedOp can fail on a network's second call only, where the
# first succeeded (oneDNN data reaching an operator that needs a plain array: the dense ResNet-18
# at 32x32, whose classifier takes 1x1 maps): a form is tried this many times before it is used.
TRIAL_CALLS = 2


def trial(call: Callable[[], mx.nd.NDArray]) -> None:
    """Call ``call()`` :data:`TRIAL_CALLS` times, waiting for each output; MXNet's error if one
    fails."""
    for _ in range(TRIAL_CALLS):
        call().wait_to_read()


class Predictor:
    """An export bound by MXNet's symbolic executor for inputs of one shape ``data_shape``
    (N, C, H, W; default: the meta JSON's input shape, batch 1): the path of the C predict API
    and ``lcnn-predict``, from Python. With ``graph``, on the graph after oneDNN's passes (the
    plain symbol when they cannot take it). At small batches it is faster than the hybridized
    ``SymbolBlock``, whose CachedOp prepares every operator's call anew (``docs/platform.md``)."""

    def __init__(self, prefix: str, data_shape: Optional[Tuple[int, ...]] = None, graph: bool = True):
        meta = _load_library_for(prefix)
        if data_shape is None:
            data_shape = meta.get("input_shape")
            if data_shape is None:
                raise ValueError(f"{prefix}-meta.json: no input_shape; give the Predictor a data_shape")
        self.data_shape = tuple(data_shape)
        plain, args, aux = mx.model.load_checkpoint(prefix, 0)
        symbols = [plain]
        if graph:
            try:
                symbols.insert(0, plain.optimize_for("MKLDNN", args, aux, ctx=mx.cpu(),
                                                     shape_dict={"data": self.data_shape}))
            except mx.base.MXNetError:  # a graph the passes cannot take: the plain symbol stands
                pass
        self._input = mx.nd.zeros(self.data_shape)
        # MXNet logs "Subgraph backend MKLDNN is activated" on each bind of a passed graph (into a
        # sweep's progress bar), reading the switch once, at the process's first bind: quiet
        # unless the user set it
        os.environ.setdefault(SUBGRAPH_VERBOSE, "0")
        for symbol in symbols:
            missing = [n for n in symbol.list_arguments() if n != "data" and n not in args]
            missing += [n for n in symbol.list_auxiliary_states() if n not in aux]
            if missing:
                raise ValueError(f"{prefix}-0000.params: no values for {', '.join(missing[:5])}"
                                 + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
            bound = {name: self._input if name == "data" else args[name] for name in symbol.list_arguments()}
            self._executor = symbol.bind(mx.cpu(), args=bound, grad_req="null",
                                         aux_states={n: aux[n] for n in symbol.list_auxiliary_states()})
            try:
                trial(lambda: self._executor.forward(is_train=False)[0])
                self.graph = symbol is not plain  # (whether it runs the graph after the passes)
                return
            except mx.base.MXNetError as e:
                failure = str(e).strip().splitlines()[-1]
        raise ValueError(f"{prefix}: MXNet's executor cannot run this export on inputs of shape {self.data_shape} "
                         f"({failure}); export.load_exported's hybridized SymbolBlock may")

    def __call__(self, x: mx.nd.NDArray) -> mx.nd.NDArray:
        """The network's output on ``x`` (shape ``data_shape``), copied in; a new array."""
        if tuple(x.shape) != self.data_shape:
            raise ValueError(f"Predictor: input of shape {tuple(x.shape)}, bound for {self.data_shape}")
        if x.dtype == self._input.dtype and x.context == self._input.context:
            _copy_now(x, self._input)
        else:
            x.copyto(self._input)
        self._executor.forward(is_train=False)
        out = self._executor.outputs[0]
        copied = mx.nd.empty(out.shape, out.context, out.dtype)
        _copy_now(out, copied)
        return copied


def _copy_now(src: mx.nd.NDArray, dst: mx.nd.NDArray) -> None:
    """``dst[:] = src`` (same shape, dtype and context) at once, through MXNet's C API: a
    ``copyto`` is an operator call, which from Python cost more than the copy (ResNet-18-fast at
    batch 1, one thread, NaiveEngine: the input's and the output's copies 0.18 ms a call, 6% of
    the whole call; this way 0.10, half of it the input's 600 KB, half the new output array).
    An array in oneDNN's blocked layout (a network's output after a convolution) has no plain
    buffer for that copy; MXNet's copy operator reorders it."""
    try:
        mx.base.check_call(mx.base._LIB.MXNDArraySyncCopyFromNDArray(dst.handle, src.handle, ctypes.c_int(-1)))
    except mx.base.MXNetError:
        src.copyto(dst)


def main(argv=None) -> None:
    from .model_zoo import get_model, list_models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", required=True, help=f"one of: {', '.join(list_models())}")
    parser.add_argument("--params", required=True, help="trained parameters (PREFIX-NNNN.params)")
    parser.add_argument("--image-shape", help="C,H,W (default: from the checkpoint's metadata)")
    parser.add_argument("--output", required=True, help="prefix of the exported files")
    parser.add_argument("--dense", action="store_true", help="plain MXNet operators, W = P x D")
    parser.add_argument("--no-chains", action="store_true",
                        help="each lookup layer its own operator (default: runs of them as one, docs/design.md)")
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
            operator=None if args.dense else ops.OP_NAME), reference=net, chains=not args.no_chains)
    except mx.base.MXNetError as e:  # the network does not run on this input shape, or I/O in MXNet
        parser.error(f"{args.output}: cannot export {args.network} for input {shape}: "
                     f"{str(e).strip().splitlines()[-1]}")
    except (ValueError, OSError, RuntimeError) as e:
        parser.error(f"{args.output}: {e}" if isinstance(e, (ExportError, OSError)) else str(e))
    log.info("exported %s and %s; max |exported - training form| = %.2e of the largest output",
             written["symbol"], written["params"], written["check"])


if __name__ == "__main__":
    main()
