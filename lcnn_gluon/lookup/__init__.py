"""The lookup layer of LCNN, one module per fact:

* :mod:`.rule` the rule: threshold ``eps``, which entries are live, the L1 step, pruning;
* :mod:`.layers` the layers (``LookupConv2D``, ``LookupDense``) and ``W = P x D``;
* :mod:`.cost` the multiplication count of a layer (the paper's speedup) and of its
  training forms;
* :mod:`.optimizer` applying the rule around an update (``LookupSGD``, ``add_l1_grad``,
  ``prune``);
* :mod:`.packed` the packed form the C++ inference operator reads.

``lcnn_gluon.nn`` re-exports the public names, as before this package existed.
"""
from .layers import (FORMS, LookupConv2D, LookupDense, compose, conv2d, is_fully_connected,  # noqa: F401
                     lookup_config, lookup_layers, set_random_lookup)
from .optimizer import LookupSGD, add_l1_grad, optimizer_for, prune, updates_lookups  # noqa: F401
from .packed import PackedLookup  # noqa: F401
