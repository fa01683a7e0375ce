"""Nodes of an exported symbol that pass their input through unchanged at inference, taken out.

Gluon's fully connected layers leave ``Flatten``, ``Dropout`` and ``Reshape`` between them: in
AlexNet's classifier each lookup layer's ``(N, C, 1, 1)`` output is flattened, goes through
dropout (the identity at inference) and is reshaped back to ``(N, C, 1, 1)`` for the next
lookup layer (:class:`lcnn_gluon.sparse_blocks.SparseLookup`). Each of those operators costs a
call (and may copy), and they split the run of lookup layers that :mod:`.chain` makes one
operator. A reader of such a path reads its start instead when both have the same shape: these
operators keep the data's order, so equal shapes mean equal arrays. ``Dropout`` in ``mode="always"``
drops at inference too and stays.
"""
from __future__ import annotations

import json
from typing import Dict, Optional, Sequence, Tuple

import mxnet as mx

from . import symbol_graph

PASS_THROUGH_OPS = ("Flatten", "Reshape", "Dropout")  # (output 0 of each: its data input, reordered or not)
# Batches the shapes are compared at: the export runs at any batch, and a reshape to a fixed
# batch (shape=(1, -1)) keeps the shape at batch 1 only.
PROBE_BATCHES = (1, 2)


def _passes_through(node: dict) -> bool:
    if node["op"] not in PASS_THROUGH_OPS:
        return False
    return node["op"] != "Dropout" or node.get("attrs", {}).get("mode", "training") != "always"


def entry_shapes(graph: Dict, item_shape: Sequence[int]) -> Dict[Tuple[int, int], tuple]:
    """``{(node, output): shapes}`` of ``graph``'s outputs for an input ``data`` of one item's
    shape ``item_shape`` (C, H, W) at each batch of :data:`PROBE_BATCHES`, where MXNet tells
    them (an operator's hidden outputs, such as Dropout's mask, are not listed). The graph's
    operators must be registered (:func:`lcnn_gluon.ops.load` for the LCNN ones)."""
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    per_batch = []
    for batch in PROBE_BATCHES:
        _, shapes, _ = internals.infer_shape_partial(data=(batch,) + tuple(item_shape))
        per_batch.append(dict(zip(internals.list_outputs(), shapes)))
    known = {}
    for i, node in enumerate(graph["nodes"]):
        names = [node["name"]] if node["op"] == "null" else [node["name"] + "_output", node["name"] + "_output0"]
        for name in names:
            shapes = tuple(tuple(b.get(name) or ()) for b in per_batch)
            if all(s and all(d > 0 for d in s) for s in shapes):
                known[(i, 0)] = shapes
                break
    return known


def drop_identities(graph: Dict, shapes: Dict[Tuple[int, int], tuple]) -> Dict:
    """``graph`` with every input (and head) that a path of :data:`PASS_THROUGH_OPS` leads to
    from an entry of the same shape reading that entry instead, the nodes left unread removed.
    ``shapes``: :func:`entry_shapes`."""
    nodes = graph["nodes"]

    def shape(e: list) -> Optional[tuple]:
        return shapes.get((e[0], e[1]))

    def source(e: list) -> list:
        """The farthest entry up e's path of pass-through nodes with e's shape (e itself if none)."""
        best, at = e, e
        while at[1] == 0 and _passes_through(nodes[at[0]]):
            at = nodes[at[0]]["inputs"][0]
            if shape(at) is not None and shape(at) == shape(e):
                best = at
        return best

    new_nodes = [dict(node, inputs=[source(e) for e in node["inputs"]]) for node in nodes]
    return symbol_graph.resorted(graph, new_nodes, symbol_graph.outputs_per_node(graph),
                                 [source(e) for e in graph["heads"]])


def drop_identities_file(path: str, item_shape: Sequence[int]) -> int:
    """Rewrite the symbol JSON at ``path`` with :func:`drop_identities` for inputs of items of
    ``item_shape`` (C, H, W); the number of nodes taken out."""
    with open(path) as f:
        graph = json.load(f)
    out = drop_identities(graph, entry_shapes(graph, item_shape))
    with open(path, "w") as f:
        json.dump(out, f)
    return len(graph["nodes"]) - len(out["nodes"])
