"""Checkpoints: ``PREFIX-%04d.params`` + ``.states`` (optimizer) + ``.json`` (what was trained).

Epoch ``N`` is the state after ``N`` finished epochs, as in MXNet's ``fit.py``
(``--load-epoch N`` resumes at epoch ``N``). A checkpoint is complete or absent:
the old ``.json`` of that epoch is removed first, the parameter and state files are
written under temporary names, flushed to disk and renamed, and the ``.json`` comes
last, with a manifest (size and SHA-256 of each file). Loading checks the manifest,
so a run killed between two renames, or files from different runs, are refused.
Optimizer state is written by :mod:`lcnn_gluon.trainer_state` (no pickle). Loading
checks that the parameters belong to the network.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import mxnet as mx
from mxnet import gluon

from . import atomic, trainer_state

HASH_CHUNK = 1 << 24  # bytes read at a time when hashing a file


def paths(prefix: str, epoch: int) -> dict:
    stem = f"{prefix}-{epoch:04d}"
    return {"params": stem + ".params", "states": stem + ".states", "json": stem + ".json"}


def latest_epoch(prefix: str) -> Optional[int]:
    """The largest ``N`` with a complete checkpoint ``PREFIX-N`` (its ``.json`` exists: it is
    written last), or None."""
    folder, stem = os.path.split(os.path.abspath(prefix))
    epochs = [int(name[len(stem) + 1:-5]) for name in (os.listdir(folder) if os.path.isdir(folder) else [])
              if name.startswith(stem + "-") and name.endswith(".json") and name[len(stem) + 1:-5].isdigit()]
    return max(epochs, default=None)


def file_digest(path: str) -> dict:
    """``{"size": bytes, "sha256": hex}`` of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return {"size": os.path.getsize(path), "sha256": digest.hexdigest()}


def save(prefix: str, epoch: int, net: gluon.Block, trainer: Optional[gluon.Trainer],
         meta: dict) -> str:
    """Write the checkpoint for ``epoch`` finished epochs; return the params path."""
    p = paths(prefix, epoch)
    os.makedirs(os.path.dirname(os.path.abspath(p["params"])), exist_ok=True)
    if os.path.exists(p["json"]):  # from now until the new manifest: no complete checkpoint
        os.remove(p["json"])
    atomic.write_atomically(p["params"], net.save_parameters)
    files = {"params": file_digest(p["params"])}
    meta = dict(meta, epoch=epoch)
    if trainer is not None:
        def write_states(tmp):
            meta["trainer"] = trainer_state.save(trainer, tmp)
        atomic.write_atomically(p["states"], write_states)
        files["states"] = file_digest(p["states"])
    atomic.write_atomically(p["json"], lambda tmp: write_json(tmp, dict(meta, files=files)))
    return p["params"]


def write_json(path: str, value: dict) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)


def read_meta(params_path: str) -> dict:
    """The ``.json`` beside a ``.params`` file, or ``{}`` when there is none; ``ValueError``
    naming it when it is not a JSON object."""
    if not os.path.isfile(params_path):
        raise ValueError(f"{params_path}: no such parameter file")
    meta_path = os.path.splitext(params_path)[0] + ".json"
    if not os.path.isfile(meta_path):
        return {}
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{meta_path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: holds a JSON {type(meta).__name__}, not the object a "
                         "checkpoint writes")
    return meta


def load_params(net: gluon.Block, params_path: str, network: Optional[str] = None,
                ctx=None) -> None:
    """Load ``params_path`` into ``net``; a file from another network is a ``ValueError``
    naming the network it came from or the parameters that do not fit."""
    meta = read_meta(params_path)
    if network and meta.get("network") and meta["network"] != network:
        raise ValueError(f"{params_path} holds network {meta['network']!r}, not {network!r}")
    try:
        saved = mx.nd.load(params_path)
    except mx.base.MXNetError as e:
        raise ValueError(f"{params_path}: not an MXNet parameter file ({e})") from e
    expected = net._collect_params_with_prefix()
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    for name in set(saved) & set(expected):
        saved[name] = _legacy_shape(saved[name], expected[name].shape)
    wrong = [f"{name} {saved[name].shape} vs {expected[name].shape}" for name in expected
             if name in saved and all(d > 0 for d in expected[name].shape)  # 0: deferred
             and saved[name].shape != expected[name].shape]
    if missing or unexpected or wrong:
        details = "; ".join(filter(None, [
            f"missing {', '.join(missing[:4])}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}" if unexpected else "",
            f"shape {', '.join(wrong[:4])}" if wrong else ""]))
        raise ValueError(f"{params_path} does not fit network {network or type(net).__name__}: "
                         f"{details}")
    for name, param in expected.items():
        array = saved[name]
        if array.dtype != param.dtype and name.endswith("alive"):  # a float kept-mask (before 0.2)
            array = array.astype(param.dtype)
        param._load_init(array, ctx)


def _legacy_shape(array: mx.nd.NDArray, shape: tuple) -> mx.nd.NDArray:
    """``array`` reshaped to ``shape`` where the two differ only by trailing 1s: before 0.2,
    AlexNet's fc7 was a 1x1 lookup convolution (P ``(n, k, 1, 1)``, D ``(k, m, 1, 1)``); it is
    now a ``LookupDense`` (P ``(n, k)``, D ``(k, m)``) with the same numbers."""
    def squeezed(dims):
        dims = tuple(dims)
        while dims and dims[-1] == 1:
            dims = dims[:-1]
        return dims
    if (array.shape != tuple(shape) and all(d > 0 for d in shape)
            and squeezed(array.shape) == squeezed(shape)):
        return array.reshape(shape)
    return array


def load(prefix: str, epoch: int, net: gluon.Block, network: str, with_states: bool = True,
         ctx=None) -> dict:
    """Restore the weights of epoch ``epoch`` after checking that the checkpoint is complete
    (its files there, with its trainer state when ``with_states``, and as its manifest
    describes them); return the metadata."""
    p = paths(prefix, epoch)
    for kind in ("json", "params") + (("states",) if with_states else ()):
        if not os.path.isfile(p[kind]):
            raise ValueError(f"--load-epoch {epoch}: {p[kind]} is missing (checkpoint incomplete "
                             "or never written)")
    meta = read_meta(p["params"])
    for kind, described in meta.get("files", {}).items():
        if kind in p and (kind != "states" or with_states) and file_digest(p[kind]) != described:
            raise ValueError(f"--load-epoch {epoch}: {p[kind]} is not the file its manifest "
                             f"{p['json']} describes (cut short, or written by another run)")
    load_params(net, p["params"], network, ctx)
    return meta


def load_trainer(prefix: str, epoch: int, trainer: gluon.Trainer, trust_pickle: bool = False) -> None:
    """Restore optimizer state (momentum, update counts; the schedule follows from them) of
    epoch ``epoch``. A pickled ``.states`` of an earlier version needs ``trust_pickle``."""
    p = paths(prefix, epoch)
    trainer_state.load(trainer, p["states"], read_meta(p["params"]).get("trainer", {}), trust_pickle)
