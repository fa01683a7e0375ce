"""Walking and editing a Gluon block tree: the one place that knows how children are held.

A Gluon ``Block`` keeps its children in ``_children`` (an ordered dict, registration
order) and usually also as attributes; replacing a child must update both.
"""
from __future__ import annotations

import copy
from typing import Iterator, Optional, Tuple

from mxnet.gluon import Block, HybridBlock


def walk(block: Block, parent: Optional[Block] = None,
         key: Optional[str] = None) -> Iterator[Tuple[Optional[Block], Optional[str], Block]]:
    """``(parent, key, block)`` for ``block`` and every block below it, depth first, in
    registration order (the root comes with ``parent = key = None``)."""
    yield parent, key, block
    for child_key, child in list(block._children.items()):
        yield from walk(child, block, child_key)


def blocks(block: Block) -> Iterator[Block]:
    """``block`` and every block below it, depth first, in registration order."""
    for _, _, b in walk(block):
        yield b


def named_blocks(block: Block, path: str = "") -> Iterator[Tuple[str, Block]]:
    """``(path, block)`` for every block below ``block``, the path as in parameter file keys
    (``"features.3"``): stable across processes, unlike the blocks' global name prefixes."""
    for key, child in block._children.items():
        child_path = f"{path}.{key}" if path else key
        yield child_path, child
        yield from named_blocks(child, child_path)


def replace_child(parent: Block, key: str, new: Block) -> None:
    """Put ``new`` in the place of ``parent``'s child ``key``, in ``_children`` and in every
    attribute that held the old child (bypassing ``Block.__setattr__``, which refuses a
    change of type)."""
    old = parent._children[key]
    parent._children[key] = new
    for attr, value in list(vars(parent).items()):
        if value is old:
            object.__setattr__(parent, attr, new)


def copy_structure(net: Block, shared: tuple = ()) -> Block:
    """A deep copy of ``net`` that works on a trained, hybridized network.

    Not copied: what ties the network to a session (each HybridBlock's cached graph
    and ``CachedOp``, which hold C handles, and each parameter's ``Trainer``, which
    holds the KVStore); the copy is not hybridized. Blocks that are instances of the
    ``shared`` classes are not copied either: the copy refers to the originals (for
    callers that replace them right away, so large parameters are not duplicated).
    """
    memo = {}
    for block in blocks(net):
        if shared and isinstance(block, shared):
            memo[id(block)] = block
            continue
        if isinstance(block, HybridBlock):
            memo[id(block._cached_op)] = None
            memo[id(block._cached_graph)] = ()
        for param in block.params.values():
            memo[id(param._trainer)] = None
    twin = copy.deepcopy(net, memo)
    for block in blocks(twin):
        if isinstance(block, HybridBlock) and not (shared and isinstance(block, shared)):
            block._clear_cached_op()
            block._active = False
    return twin
