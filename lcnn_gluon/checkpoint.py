"""Checkpoints: ``PREFIX-%04d.params`` + ``.states`` (trainer) + ``.json`` (what was trained).

Epoch ``N`` is the state after ``N`` finished epochs, as in MXNet's ``fit.py``
(``--load-epoch N`` resumes at epoch ``N``). Each file is written under a
temporary name and renamed; the ``.json`` is written last and marks the
checkpoint complete. Loading checks that the parameters belong to the network.
"""
from __future__ import annotations

import json
import os
from typing import Optional

import mxnet as mx
from mxnet import gluon


def paths(prefix: str, epoch: int) -> dict:
    stem = f"{prefix}-{epoch:04d}"
    return {"params": stem + ".params", "states": stem + ".states", "json": stem + ".json"}


def write_atomically(path: str, write) -> None:
    """Call ``write(temporary path)``, then rename the result to ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(prefix: str, epoch: int, net: gluon.Block, trainer: Optional[gluon.Trainer],
         meta: dict) -> str:
    """Write the checkpoint for ``epoch`` finished epochs; return the params path."""
    p = paths(prefix, epoch)
    folder = os.path.dirname(os.path.abspath(p["params"]))
    os.makedirs(folder, exist_ok=True)
    write_atomically(p["params"], net.save_parameters)
    if trainer is not None:
        write_atomically(p["states"], trainer.save_states)

    write_atomically(p["json"], lambda tmp: write_json(tmp, dict(meta, epoch=epoch)))
    return p["params"]


def write_json(path: str, value: dict) -> None:
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)


def read_meta(params_path: str) -> dict:
    """The ``.json`` beside a ``.params`` file, or ``{}`` when there is none."""
    if not os.path.isfile(params_path):
        raise ValueError(f"{params_path}: no such parameter file")
    meta_path = os.path.splitext(params_path)[0] + ".json"
    if not os.path.isfile(meta_path):
        return {}
    with open(meta_path) as f:
        return json.load(f)


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
        param._load_init(saved[name], ctx)


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
    """Restore the weights of epoch ``epoch`` (after checking that the checkpoint is
    complete, with its trainer state when ``with_states``); return the metadata."""
    p = paths(prefix, epoch)
    for kind in ("json", "params") + (("states",) if with_states else ()):
        if not os.path.isfile(p[kind]):
            raise ValueError(f"--load-epoch {epoch}: {p[kind]} is missing (checkpoint incomplete "
                             "or never written)")
    load_params(net, p["params"], network, ctx)
    return read_meta(p["params"])


def load_trainer(prefix: str, epoch: int, trainer: gluon.Trainer) -> None:
    """Restore optimizer state (momentum, update count, schedule) of epoch ``epoch``."""
    trainer.load_states(paths(prefix, epoch)["states"])
