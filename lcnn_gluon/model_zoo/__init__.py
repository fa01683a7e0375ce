"""Model zoo in the GluonCV style: ``get_model(name, classes=..., **kwargs)``.

Names: ``lenet``, ``alexnet``, ``resnet18``, each also as ``*_lcnn_fast`` and
``*_lcnn_accurate`` with the paper's dictionary sizes and lambda (LeNet: ours,
see ``lenet.py``).
"""
from typing import Callable, Dict, List

from mxnet.gluon import HybridBlock

_MODELS: Dict[str, Callable[..., HybridBlock]] = {}


def register_model(fn: Callable[..., HybridBlock]) -> Callable[..., HybridBlock]:
    """Register a model constructor under its function name; a name can be used once."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def get_model(name: str, **kwargs) -> HybridBlock:
    """Build a registered model, e.g. ``get_model('resnet18_lcnn_fast', classes=1000)``."""
    if name not in _MODELS:
        raise ValueError(f"unknown network {name!r}; available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name](**kwargs)


def list_models() -> List[str]:
    return sorted(_MODELS)


from . import alexnet, lenet, resnet  # noqa: E402,F401  (register the families)
