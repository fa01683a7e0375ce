"""Lookup layers and their training helpers, under the names used since version 0.1.

The implementation lives in :mod:`lcnn_gluon.lookup` (one module per fact: the rule,
the layers, the cost, the optimizer, the packed format); this module re-exports its
public names so that ``from lcnn_gluon import nn as lnn`` keeps working.
"""
from .lookup.layers import (FORMS, LookupConv2D, LookupDense, _Lookup, compose, conv2d,  # noqa: F401
                            is_fully_connected, lookup_config, lookup_layers, set_random_lookup)
from .lookup.optimizer import LookupSGD, add_l1_grad, optimizer_for, prune, updates_lookups  # noqa: F401
