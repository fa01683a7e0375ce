"""An MXNet symbol's JSON (``nodes``, ``heads``, ``arg_nodes``, ``node_row_ptr``) as the export's
graph passes (:mod:`.identities`, :mod:`.chain`) rewrite it.

A graph entry is ``[node, output, version]``; the outputs of all nodes, in node order, are
numbered by ``node_row_ptr`` (node ``i``'s output ``k`` is ``node_row_ptr[i] + k``), the order in
which MXNet lists ``Symbol.get_internals()``'s outputs.
"""
from __future__ import annotations

from typing import Dict, List


def outputs_per_node(graph: Dict) -> List[int]:
    """How many outputs each node of ``graph`` has."""
    row = graph["node_row_ptr"]
    return [row[i + 1] - row[i] for i in range(len(graph["nodes"]))]


def resorted(graph: Dict, nodes: List[dict], outputs_of: List[int], heads: List[list]) -> Dict:
    """``graph`` with ``nodes`` (``outputs_of[i]`` outputs each) reachable from ``heads``, in the
    post-order from the heads in which MXNet saves a graph: unreachable nodes are left out, and
    entries, ``arg_nodes`` and ``node_row_ptr`` renumbered."""
    order: List[int] = []
    seen = set()
    for head in heads:
        stack = [(head[0], False)]
        while stack:
            i, expanded = stack.pop()
            if expanded:
                order.append(i)
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.append((i, True))
            stack.extend((e[0], False) for e in reversed(nodes[i]["inputs"]))
    index = {old: new for new, old in enumerate(order)}
    out_nodes, row_ptr = [], [0]
    for old in order:
        node = dict(nodes[old], inputs=[[index[e[0]], e[1], e[2]] for e in nodes[old]["inputs"]])
        out_nodes.append(node)
        row_ptr.append(row_ptr[-1] + outputs_of[old])
    return dict(graph, nodes=out_nodes, arg_nodes=[k for k, n in enumerate(out_nodes) if n["op"] == "null"],
                node_row_ptr=row_ptr, heads=[[index[e[0]], e[1], e[2]] for e in heads])
