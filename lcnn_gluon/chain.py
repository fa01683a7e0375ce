"""Runs of lookup layers in an exported symbol, rewritten as one ``lcnn_lookup_chain`` operator
each (``operators/lookup_chain.cc``; its attributes and inputs are described in ``lookup_chain_attrs.h``).

A run is a sequence of ``lcnn_lookup_conv`` nodes, in the symbol's order, whose inputs and
shortcuts are the run's first input or outputs of earlier nodes of the run (ResNet's stages
between two layers MXNet runs itself). One operator for the run lets it take a batch group by
group through its layers, so that a group's activations stay in cache between layers
(``benchmarks/RESULTS.md``, run 34); its outputs are the members' outputs read outside the run.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional, Tuple

from . import symbol_graph
from .lookup.packed import INPUTS, PACKED
from .ops import OP_NAME

CHAIN_OP = "lcnn_lookup_chain"
LAYER_SEPARATOR, FIELD_SEPARATOR = ";", "|"  # of the layers attribute (lookup_chain_attrs.h)
FLATTEN_OP = "Flatten"
RESIDUAL_INPUT = INPUTS.index("residual")  # a layer's inputs: data, its PACKED weights, residual
MIN_CHAIN_LAYERS = 2  # a run of one layer stays as it is

Entry = Tuple[int, int]  # (node, output)


def _residual(node: dict) -> bool:
    return node.get("attrs", {}).get("residual", "0") in ("1", "True", "true")


def find_runs(nodes: List[dict]) -> List[List[int]]:
    """The runs of ``nodes`` (an MXNet graph's node list) to chain: lists of node indices."""
    runs, current, start_input = [], [], None
    for i, node in enumerate(nodes):
        if node["op"] != OP_NAME:
            continue
        data = tuple(node["inputs"][0][:2])
        shortcut = tuple(node["inputs"][RESIDUAL_INPUT][:2]) if _residual(node) else None
        weights_are_variables = all(nodes[e[0]]["op"] == "null" for e in node["inputs"][1:1 + len(PACKED)])

        def inside(entry: Entry) -> bool:
            return entry == start_input or (entry[1] == 0 and entry[0] in current)

        if current and weights_are_variables and inside(data) and (shortcut is None or inside(shortcut)):
            current.append(i)
            continue
        if len(current) >= MIN_CHAIN_LAYERS:
            runs.append(current)
        current, start_input = [], None
        if weights_are_variables and (shortcut is None or shortcut == data):
            current, start_input = [i], data
    if len(current) >= MIN_CHAIN_LAYERS:
        runs.append(current)
    return runs


def layer_fields(attrs: Dict[str, str]) -> List[Dict[str, str]]:
    """Each layer's fields (``name: value``) of a ``lcnn_lookup_chain`` node's ``attrs``."""
    return [dict(field.split("=", 1) for field in layer.split(FIELD_SEPARATOR))
            for layer in attrs["layers"].split(LAYER_SEPARATOR)]


def lookup_layers(graph: Dict) -> List[Dict[str, str]]:
    """Every lookup layer's attributes in ``graph`` (an MXNet symbol's JSON, as a dict), in node
    order: an ``lcnn_lookup_conv`` node's own, a chain's layers' fields."""
    layers: List[Dict[str, str]] = []
    for node in graph["nodes"]:
        if node["op"] == OP_NAME:
            layers.append(dict(node.get("attrs", {})))
        elif node["op"] == CHAIN_OP:
            layers.extend(layer_fields(node["attrs"]))
    return layers


def layers_attribute(layers: List[Dict[str, str]], names: Optional[List[str]] = None) -> str:
    """The ``layers`` attribute holding each layer's fields (``name: value``), :func:`layer_fields`'s
    inverse; ``names`` (default: their positions) name the layers in its error."""
    for layer, fields in zip(names or map(str, range(len(layers))), layers):
        for name, value in fields.items():
            if any(sep in name + value for sep in (LAYER_SEPARATOR, FIELD_SEPARATOR)) or "=" in name:
                raise ValueError(f"{CHAIN_OP}: layer {layer}'s attribute {name}={value!r} holds a separator "
                                 f"({LAYER_SEPARATOR!r}, {FIELD_SEPARATOR!r}, or '=' in its name)")
    return LAYER_SEPARATOR.join(FIELD_SEPARATOR.join(f"{name}={value}" for name, value in fields.items())
                                for fields in layers)


def _chain_node(nodes: List[dict], run: List[int], read_outside: List[int], flat: List[int]) -> dict:
    """The ``lcnn_lookup_chain`` node of ``run``, whose outputs are the members ``read_outside``,
    those at positions ``flat`` flattened to ``(N, C * H * W)``."""
    first_input = nodes[run[0]]["inputs"][0]
    position = {node: k for k, node in enumerate(run)}
    layers, inputs = [], [first_input]
    for k, i in enumerate(run):
        node = nodes[i]
        fields = {key: value for key, value in node.get("attrs", {}).items() if not key.startswith("__")}
        sources = [("data", node["inputs"][0])]
        if _residual(node):
            sources.append(("shortcut", node["inputs"][RESIDUAL_INPUT]))
        for field, entry in sources:
            fields[field] = "-1" if entry[:2] == first_input[:2] else str(position[entry[0]])
        layers.append(fields)
        inputs.extend(node["inputs"][1:1 + len(PACKED)])
    attrs = {"num_layers": str(len(run)), "layers": layers_attribute(layers, [nodes[i]["name"] for i in run]),
             "outputs": ",".join(str(position[m]) for m in read_outside)}
    if flat:
        attrs["flat_outputs"] = ",".join(map(str, flat))
    return {"op": CHAIN_OP, "name": nodes[run[0]]["name"] + "_chain", "attrs": attrs, "inputs": inputs}


def chain_lookups(graph: Dict) -> Dict:
    """``graph`` (an MXNet symbol's JSON, as a dict) with each run of :func:`find_runs` as one
    ``lcnn_lookup_chain`` node; the nodes re-sorted in topological order. A member output read
    only by ``Flatten`` nodes (AlexNet's classifier) is given flattened by the chain, and those
    nodes leave the graph: each was an operator call (about 25 us of AlexNet-fast's 0.94 ms at
    batch 1, two threads)."""
    nodes = graph["nodes"]
    runs = find_runs(nodes)
    if not runs:
        return graph
    outputs_of = symbol_graph.outputs_per_node(graph)
    member = {i: r for r, run in enumerate(runs) for i in run}
    readers: Dict[int, set] = {}  # node -> the nodes reading one of its outputs
    for i, node in enumerate(nodes):
        for e in node["inputs"]:
            readers.setdefault(e[0], set()).add(i)
    heads = {e[0] for e in graph["heads"]}
    new_nodes = [dict(node) for node in nodes]  # (the caller's graph stays as it was)
    where: Dict[int, Tuple[int, int]] = {}  # member, or Flatten node folded into a chain -> (chain node, output)
    for r, run in enumerate(runs):
        outside = {i: {j for j in readers.get(i, ()) if member.get(j) != r} for i in run}
        read_outside = [i for i in run if i in heads or outside[i]]
        flat = [k for k, i in enumerate(read_outside)
                if i not in heads and all(nodes[j]["op"] == FLATTEN_OP for j in outside[i])]
        new_nodes.append(_chain_node(nodes, run, read_outside, flat))
        outputs_of.append(len(read_outside))
        chain_node = len(new_nodes) - 1
        for k, i in enumerate(read_outside):
            where.update({j: (chain_node, k) for j in (outside[i] if k in flat else [i])})

    def moved(e: list) -> list:
        return [where[e[0]][0], where[e[0]][1], 0] if e[0] in where else e

    for i, node in enumerate(new_nodes):
        if i not in member:
            node["inputs"] = [moved(e) for e in node["inputs"]]
    return symbol_graph.resorted(graph, new_nodes, outputs_of, [moved(e) for e in graph["heads"]])


def chain_symbol_file(path: str) -> int:
    """Rewrite the symbol JSON at ``path`` with :func:`chain_lookups`; the number of chains."""
    with open(path) as f:
        graph = json.load(f)
    chained = chain_lookups(graph)
    with open(path, "w") as f:
        json.dump(chained, f)
    return sum(node["op"] == CHAIN_OP for node in chained["nodes"])
