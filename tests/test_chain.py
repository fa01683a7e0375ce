"""Runs of lookup layers exported as one ``lcnn_lookup_chain`` operator (lcnn_gluon/chain.py,
operators/lookup_chain.cc): the runs found in a ResNet, the same outputs as the layers one by one
(batches run whole and in groups of images, one and two threads, every kernel set this host
runs), the predictor on a chained export, and the operator's errors."""
import json
import textwrap

import mxnet as mx
import numpy as np
import pytest
from conftest import KERNEL_SETS, PY, run

from lcnn_gluon import chain

# ResNet-18-fast at 144x144: conv1 and the first stage have 36x36 maps, more pixels than the
# operator batches together (kBatchedProductMaxPixels), and outputs of 5 MB for 15 or 16 images,
# more than kChainMinBatchBytes, so batches of 15 and 16 run them in groups (of 1 and 2 images:
# the most that divide the batch); the later stages run whole (2.6 MB at most): both kinds of
# segment, and buffers crossing them. Batches of 1 and 2 run whole. The groups of 16 follow the
# L2 the chain is told (L2_BYTES): unknown, pairs; 1 MB, which holds one image's largest grouped
# layer (0.66 MB in and out) and not two, single images, which also take the layers whose batch
# outgrows that L2 (the second and third stages: 2.6 and 1.3 MB; the fourth, 5x5, runs whole).
L2_BYTES = {"1": "0", "2": str(1 << 20)}
SCRIPT = textwrap.dedent("""
    import json, os, sys
    import mxnet as mx
    import numpy as np
    from lcnn_gluon import ops
    sys.path.insert(0, "tests")
    from chained_exports import chained_and_plain
    mx.random.seed(0)
    shape = (3, 144, 144)
    chained, plain, meta = chained_and_plain(shape)
    errors = {}
    for batch in (1, 15, 16, 2, 16):  # (16 again after another shape: the plan follows the batch)
        x = mx.nd.random.normal(shape=(batch,) + shape)
        want, got = plain(x).asnumpy(), chained(x).asnumpy()
        errors[f"batch {batch}"] = float(np.abs(got - want).max() / np.abs(want).max())
    # packed content made wrong after a call in groups: an error, not a crash (the threads run
    # new weights one after the other), and the next good weights run again
    indices = next(p for name, p in chained.collect_params().items() if name.endswith("basicblock0_lookupconv2d0_indices"))
    good = indices.data().copy()
    indices.set_data(good + 10 ** 6)
    try:
        chained(x).wait_to_read()
        caught = ""
    except mx.base.MXNetError as e:
        caught = str(e)
    indices.set_data(good)
    errors["after bad weights"] = float(np.abs(chained(x).asnumpy() - want).max() / np.abs(want).max())
    # other valid content in a grouped layer: each worker's first group of the call compares it
    # (the later groups of a call do not)
    for block in (chained, plain):
        params = {name: p for name, p in block.collect_params().items() if "basicblock0_lookupconv2d0" in name}
        ind = next(p for name, p in params.items() if name.endswith("_indices"))
        coef = next(p for name, p in params.items() if name.endswith("_coefs"))
        positions = 16 * 9  # k * kh * kw of the first stage (resnet18_lcnn_fast)
        ind.set_data((ind.data().copy() + 7) % positions)
        coef.set_data(coef.data().copy() * 1.5)
    want = plain(x).asnumpy()
    errors["other weights"] = float(np.abs(chained(x).asnumpy() - want).max() / np.abs(want).max())
    os.environ["LCNN_L2_BYTES"] = "lots"  # read when the batch changes
    try:
        chained(mx.nd.zeros((3,) + shape)).wait_to_read()
        caught_l2 = ""
    except mx.base.MXNetError as e:
        caught_l2 = str(e)
    print(json.dumps(dict(kernels=ops.kernel_isa(), chains=meta["lookup_chains"], errors=errors, caught=caught,
                     caught_l2=caught_l2)))
""")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("threads", ["1", "2"])
def test_a_chained_export_equals_its_layers_one_by_one(lcnn_ops, threads, isa):
    env = {"OMP_NUM_THREADS": threads, "LCNN_ISA": isa, "LCNN_L2_BYTES": L2_BYTES[threads]}
    out = run(PY, "-c", SCRIPT, env=env, timeout=900).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert result["kernels"] == isa and result["chains"] >= 1
    assert "is outside [0, k*kh*kw" in result["caught"]
    assert "LCNN_L2_BYTES='lots' is not a number of bytes" in result["caught_l2"]
    assert len(result["errors"]) == 6
    bad = {name: e for name, e in result["errors"].items() if not e <= 1e-6}  # the same kernels, in another order
    assert not bad, bad


def _lookup(name, data, residual=None, **attrs):
    inputs = [data] + [[i, 0, 0] for i in range(1, 6)]  # (weights: variables, any)
    if residual is not None:
        inputs.append(residual)
        attrs["residual"] = "1"
    return {"op": chain.OP_NAME, "name": name, "attrs": dict(kernel="(3, 3)", num_filter="8", **attrs),
            "inputs": inputs}


def test_runs_are_the_layers_fed_only_from_their_run():
    nodes = [{"op": "null", "name": "w", "inputs": []}] * 6
    nodes = nodes + [
        _lookup("a", [0, 0, 0]),                 # 6: starts a run
        _lookup("b", [6, 0, 0]),                 # 7: in it
        _lookup("c", [7, 0, 0], [6, 0, 0]),      # 8: in it, its shortcut too
        {"op": "Activation", "name": "r", "attrs": {}, "inputs": [[8, 0, 0]]},  # 9: MXNet's
        _lookup("d", [8, 0, 0], [9, 0, 0]),      # 10: shortcut from outside: ends the run, alone
        _lookup("e", [10, 0, 0]),                # 11: starts a run (d's output is its input)
        _lookup("f", [11, 0, 0], [10, 0, 0]),    # 12: shortcut = the run's input
        _lookup("g", [9, 0, 0]),                 # 13: from outside: a run of one, left alone
    ]
    assert chain.find_runs(nodes) == [[6, 7, 8], [11, 12]]


def test_a_rewritten_graph_reads_each_output_where_its_run_left_it():
    nodes = [{"op": "null", "name": n, "inputs": []} for n in ("data", "d", "p", "i", "c", "b")]
    nodes += [_lookup("a", [0, 0, 0]), _lookup("b", [6, 0, 0]),
              {"op": "Activation", "name": "r", "attrs": {}, "inputs": [[6, 0, 0]]},
              {"op": "elemwise_add", "name": "s", "attrs": {}, "inputs": [[7, 0, 0], [8, 0, 0]]}]
    graph = {"nodes": nodes, "arg_nodes": list(range(6)), "node_row_ptr": list(range(len(nodes) + 1)),
             "heads": [[9, 0, 0]], "attrs": {}}
    out = chain.chain_lookups(graph)
    ops_ = [n["op"] for n in out["nodes"]]
    assert ops_.count(chain.CHAIN_OP) == 1 and chain.OP_NAME not in ops_
    node = next(n for n in out["nodes"] if n["op"] == chain.CHAIN_OP)
    assert node["attrs"]["outputs"] == "0,1"  # a is read by r, b by s
    fields = chain.layer_fields(node["attrs"])
    assert [f["data"] for f in fields] == ["-1", "0"] and "flat_outputs" not in node["attrs"]
    for k, n in enumerate(out["nodes"]):  # topological, and every entry exists
        assert all(e[0] < k for e in n["inputs"])
    assert out["node_row_ptr"][-1] == len(out["nodes"]) + 1  # the chain has two outputs
    assert [out["nodes"][i]["op"] for i in out["arg_nodes"]] == ["null"] * 6


def test_a_run_read_only_by_a_flatten_gives_its_output_flat():
    nodes = [{"op": "null", "name": n, "inputs": []} for n in ("data", "d", "p", "i", "c", "b")]
    nodes += [_lookup("a", [0, 0, 0]), _lookup("b", [6, 0, 0]),
              {"op": "Flatten", "name": "f", "attrs": {}, "inputs": [[7, 0, 0]]},   # 8: b's only reader
              {"op": "Activation", "name": "r", "attrs": {}, "inputs": [[8, 0, 0]]},
              {"op": "Flatten", "name": "g", "attrs": {}, "inputs": [[6, 0, 0]]},   # 10: a's, with s
              {"op": "elemwise_add", "name": "s", "attrs": {}, "inputs": [[6, 0, 0], [10, 0, 0]]}]
    graph = {"nodes": nodes, "arg_nodes": list(range(6)), "node_row_ptr": list(range(len(nodes) + 1)),
             "heads": [[9, 0, 0], [11, 0, 0]], "attrs": {}}
    out = chain.chain_lookups(graph)
    ops_ = [n["op"] for n in out["nodes"]]
    assert ops_.count("Flatten") == 1  # b's went; a's stays (s reads a as it is)
    c = ops_.index(chain.CHAIN_OP)
    assert out["nodes"][c]["attrs"]["outputs"] == "0,1" and out["nodes"][c]["attrs"]["flat_outputs"] == "1"
    relu = out["nodes"][ops_.index("Activation")]
    assert relu["inputs"] == [[c, 1, 0]]


def test_flat_outputs_are_the_outputs_flattened(lcnn_ops):
    x = mx.nd.random.normal(shape=(2, 2, 5, 5))
    weights = [mx.nd.random.normal(shape=(3, 2)), mx.nd.array([0, 1, 1, 2, 2], dtype="int32"),
               mx.nd.array([0, 13], dtype="int32"), mx.nd.array([2.0, -1.0]), mx.nd.array([0.1, 0.2, 0.3, 0.4])]
    attrs = dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter=4|pad=(1, 1)")
    plain = mx.nd.lcnn_lookup_chain(x, *weights, **attrs).asnumpy()
    flat = mx.nd.lcnn_lookup_chain(x, *weights, flat_outputs="0", **attrs).asnumpy()
    assert plain.shape == (2, 4, 5, 5) and flat.shape == (2, 100)
    assert np.abs(plain).max() > 0.5 and np.array_equal(flat, plain.reshape(2, -1))


@pytest.mark.parametrize("attrs, message", [
    (dict(num_layers="0"), "num_layers must be a positive integer"),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter=4|data=0"),
     "layer 0's data must be -1 or a layer before 0"),
    (dict(num_layers="1", outputs="1", layers="kernel=(3, 3)|num_filter=4"), "outputs must list layers"),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter=4", l3_kernel="1"),
     "unknown attribute 'l3_kernel' .an export from before the layers attribute: export the model again."),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter=4", stride="1"), "unknown attribute 'stride'"),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)"), "'kernel' and 'num_filter' are required"),
    (dict(num_layers="2", outputs="0", layers="kernel=(3, 3)|num_filter=4"), "layers must hold num_layers = 2"),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter"), "field 'num_filter' is not name=value"),
    (dict(num_layers="1", outputs="0", layers="kernel=(3, 3)|num_filter=4", flat_outputs="1"),
     "flat_outputs must list outputs in .0, 1., got .1."),
])
def test_bad_chain_attributes_are_clear_errors(lcnn_ops, attrs, message):
    x = mx.nd.zeros((1, 2, 5, 5))
    weights = [mx.nd.zeros((3, 2)), mx.nd.array([0] * 5, dtype="int32"), mx.nd.array([0], dtype="int32"),
               mx.nd.zeros((1,)), mx.nd.zeros((4,))]
    for _ in range(2):  # parsed attributes are kept only when they hold no error
        with pytest.raises(mx.base.MXNetError, match=message):
            mx.nd.lcnn_lookup_chain(x, *weights, **attrs).wait_to_read()


def test_a_chain_checks_each_layers_shapes(lcnn_ops):
    x = mx.nd.zeros((1, 2, 5, 5))
    weights = [mx.nd.zeros((3, 5)), mx.nd.array([0] * 5, dtype="int32"), mx.nd.array([0], dtype="int32"),
               mx.nd.zeros((1,)), mx.nd.zeros((4,))]  # a dictionary of 5 channels for an input of 2
    with pytest.raises(mx.base.MXNetError, match="dictionary must be"):
        mx.nd.lcnn_lookup_chain(x, *weights, num_layers="1", outputs="0",
                                layers="kernel=(3, 3)|num_filter=4").wait_to_read()
