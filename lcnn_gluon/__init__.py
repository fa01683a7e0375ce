"""LCNN (lookup-based convolutional networks, CVPR 2017) on MXNet Gluon.

Public names are imported lazily: ``tools/im2rec.py`` uses the packing modules
without paying for ``import mxnet`` (about 2 s).
"""
import importlib
import os

__version__ = "0.1.0"

# MXNet reads OMP_NUM_THREADS once, when it is first imported, and on small
# machines defaults to one thread, which halves ImageRecordIter and training
# speed. Use every core unless the user said otherwise.
if hasattr(os, "sched_getaffinity"):
    os.environ.setdefault("OMP_NUM_THREADS", str(len(os.sched_getaffinity(0))))

_LAZY = {
    "get_model": "lcnn_gluon.model_zoo",
    "list_models": "lcnn_gluon.model_zoo",
    "convert": "lcnn_gluon.conversion",
    "sparsify": "lcnn_gluon.export",
}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lcnn_gluon' has no attribute {name!r}")


__all__ = sorted(_LAZY)
