"""A Gluon Trainer's optimizer state in a format that cannot run code when read.

MXNet's ``Trainer.save_states`` pickles the updater's states and the optimizer;
``load_states`` unpickles them, so a crafted ``.states`` file runs any command. Here
the state tensors (momentum, ...) go to an NDArray file (``mx.nd.save``: plain arrays)
and the few numbers (update counts) to JSON. The learning-rate schedule is rebuilt
from the command line and replayed from the update count. Old pickled files are
refused unless the caller trusts them (``--trust-states``).
"""
from __future__ import annotations

import struct

import mxnet as mx
from mxnet import gluon

NDARRAY_FILE_MAGIC = 0x112  # the first 8 bytes of an mx.nd.save file (kMXAPINDArrayListMagic)
PICKLE_PROTOCOL_MARK = 0x80  # the first byte of a pickle (protocol 2 and later)


class UntrustedStates(ValueError):
    """A pickled optimizer state file: loading it would run whatever it contains."""


def _updaters(trainer: gluon.Trainer):
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        raise ValueError("optimizer state lives in the KVStore (update_on_kvstore): not saved here")
    return trainer._updaters


def save(trainer: gluon.Trainer, path: str) -> dict:
    """Write the state tensors of ``trainer`` to ``path`` (an NDArray file); return the rest
    (JSON-able: the optimizer's name, update counts, which tensors each state has)."""
    arrays, layout = {}, {}
    for index, state in _updaters(trainer)[0].states.items():
        parts = list(state) if isinstance(state, (tuple, list)) else [state]
        for j, part in enumerate(parts):
            if part is not None and not isinstance(part, mx.nd.NDArray):
                raise TypeError(f"optimizer state {index} holds a {type(part).__name__}")
            if part is not None:  # default layout, on the CPU: what mx.nd.save can write
                arrays[f"{index}:{j}"] = mx.nd.array(part.asnumpy(), ctx=mx.cpu(), dtype=part.dtype)
        flags = [part is not None for part in parts]
        layout[str(index)] = flags if isinstance(state, (tuple, list)) else flags[0]
    mx.nd.save(path, arrays)
    opt = trainer._optimizer
    return dict(optimizer=type(opt).__name__.lower(), num_update=int(opt.num_update),
                index_update_count={str(k): int(v) for k, v in opt._index_update_count.items()},
                layout=layout)


def file_kind(path: str) -> str:
    """``"ndarray"``, ``"pickle"`` or ``"unknown"``, from the first bytes of ``path``."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) == 8 and struct.unpack("<Q", head)[0] == NDARRAY_FILE_MAGIC:
        return "ndarray"
    return "pickle" if head[:1] == bytes([PICKLE_PROTOCOL_MARK]) else "unknown"


def load(trainer: gluon.Trainer, path: str, info: dict, trust_pickle: bool = False) -> None:
    """Restore what :func:`save` wrote (``info``: its returned dict) into every device's updater.

    A pickled file (MXNet's own format, written by earlier versions) raises
    :class:`UntrustedStates` unless ``trust_pickle``; anything else unreadable is a
    ``ValueError`` naming ``path``.
    """
    kind = file_kind(path)
    if kind == "pickle":
        if not trust_pickle:
            raise UntrustedStates(
                f"{path} is a pickled optimizer state (MXNet's format, written before version 0.2); "
                "loading a pickle runs whatever code it contains: pass --trust-states if you wrote "
                "this file yourself")
        trainer.load_states(path)
        return
    if kind != "ndarray" or "layout" not in info:
        raise ValueError(f"{path}: not an optimizer state file of this project")
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError as e:
        raise ValueError(f"{path}: unreadable optimizer state ({str(e).strip().splitlines()[-1]})") from e
    states = {}
    for index, present in info["layout"].items():
        flags = present if isinstance(present, list) else [present]
        parts = [arrays.get(f"{index}:{j}") if flag else None for j, flag in enumerate(flags)]
        if any(flag and part is None for flag, part in zip(flags, parts)):
            raise ValueError(f"{path}: the state of parameter {index} is missing")
        states[int(index)] = tuple(parts) if isinstance(present, list) else parts[0]
    for updater in _updaters(trainer):
        updater.states = {i: _copy(s) for i, s in states.items()}
        updater.states_synced = dict.fromkeys(updater.states, False)  # moved to each device on use
    opt = trainer._optimizer
    opt.num_update = int(info["num_update"])
    counts = {int(k): int(v) for k, v in info["index_update_count"].items()}
    for device in list(opt._all_index_update_counts) + [c.device_id for c in trainer._contexts]:
        opt._all_index_update_counts[device] = dict(counts)
    opt._index_update_count = opt._all_index_update_counts[trainer._contexts[0].device_id]


def _copy(state):
    if isinstance(state, tuple):
        return tuple(_copy(s) for s in state)
    return None if state is None else state.copy()
