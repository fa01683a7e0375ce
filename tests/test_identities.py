"""Nodes that pass their input through at inference, taken out of an export's graph
(lcnn_gluon/identities.py): which go, which stay, and the same outputs before and after."""
import json

import mxnet as mx
import numpy as np

from lcnn_gluon import identities

F, C = 6, 5  # filters of the convolutions, channels of the input


def conv(x, name, kernel=1):
    return mx.sym.Convolution(x, kernel=(kernel, kernel), num_filter=F, name=name)


def flat_round_trip(x, name, mode="training"):
    """Flatten, Dropout and Reshape back to (N, -1, 1, 1), as Gluon leaves them between
    fully connected lookup layers."""
    y = mx.sym.Flatten(x, name=name + "_flatten")
    y = mx.sym.Dropout(y, p=0.5, mode=mode, name=name + "_dropout")
    return mx.sym.Reshape(y, shape=(0, -1, 1, 1), name=name + "_reshape")


def passed(symbol, data_shape):
    """(graph before, graph after the pass)."""
    graph = json.loads(symbol.tojson())
    return graph, identities.drop_identities(graph, identities.entry_shapes(graph, data_shape[1:]))


def outputs(graph, x, params):
    sym = mx.sym.load_json(json.dumps(graph))
    args = {n: (x if n == "data" else params[n]) for n in sym.list_arguments()}
    return [out.asnumpy() for out in sym.bind(mx.cpu(), args=args, grad_req="null").forward(is_train=False)]


def ops_of(graph):
    return [n["op"] for n in graph["nodes"] if n["op"] != "null"]


def check_same_outputs(before, after, data_shape):
    rng = np.random.RandomState(0)
    sym = mx.sym.load_json(json.dumps(before))
    arg_shapes, _, _ = sym.infer_shape(data=data_shape)
    params = {n: mx.nd.array(rng.standard_normal(s)) for n, s in zip(sym.list_arguments(), arg_shapes)}
    x = params["data"]
    for got, want in zip(outputs(after, x, params), outputs(before, x, params), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_round_trip_of_a_1x1_map_goes_and_the_readers_read_its_start():
    data_shape = (2, C, 3, 3)
    first = conv(mx.sym.var("data"), "first", kernel=3)  # (2, F, 1, 1)
    out = mx.sym.Flatten(conv(flat_round_trip(first, "between"), "second"), name="out")
    before, after = passed(out, data_shape)
    assert ops_of(before) == ["Convolution", "Flatten", "Dropout", "Reshape", "Convolution", "Flatten"]
    assert ops_of(after) == ["Convolution", "Convolution", "Flatten"]  # the head's Flatten changes the shape
    second = next(n for n in after["nodes"] if n["name"] == "second")
    assert after["nodes"][second["inputs"][0][0]]["name"] == "first"
    assert after["node_row_ptr"][-1] == len(after["nodes"]) and after["arg_nodes"] == [
        i for i, n in enumerate(after["nodes"]) if n["op"] == "null"]
    check_same_outputs(before, after, data_shape)


def test_paths_that_change_the_shape_or_drop_at_inference_stay():
    data_shape = (2, C, 4, 4)
    first = conv(mx.sym.var("data"), "first", kernel=3)  # (2, F, 2, 2): flattened to (2, 4F, 1, 1)
    wide = conv(flat_round_trip(first, "wide"), "second")
    always = conv(flat_round_trip(wide, "always", mode="always"), "third")  # Dropout that drops at inference
    # a reshape to batch 1: the identity at batch 1 only
    fixed = conv(mx.sym.Reshape(always, shape=(1, -1, 1, 1), name="fixed"), "fourth")
    before, after = passed(mx.sym.Flatten(fixed, name="out"), (1,) + data_shape[1:])
    kept = ops_of(after)
    assert kept.count("Reshape") == 3 and kept.count("Dropout") == 1  # the wide, always and fixed paths'
    fourth = next(n for n in after["nodes"] if n["name"] == "fourth")
    assert after["nodes"][fourth["inputs"][0][0]]["name"] == "fixed"
    dropout = next(n for n in after["nodes"] if n["op"] == "Dropout")
    assert dropout["attrs"]["mode"] == "always"
    third = next(n for n in after["nodes"] if n["name"] == "third")
    assert after["nodes"][third["inputs"][0][0]]["name"] == "always_reshape"


def test_a_node_still_read_elsewhere_stays_for_that_reader():
    data_shape = (2, C, 3, 3)
    first = conv(mx.sym.var("data"), "first", kernel=3)
    flat = mx.sym.Flatten(first, name="flat")  # read by the round trip and by an output of its own
    back = mx.sym.Reshape(flat, shape=(0, -1, 1, 1), name="back")
    group = mx.sym.Group([mx.sym.Flatten(conv(back, "second"), name="out"), flat * 2])
    before, after = passed(group, data_shape)
    second = next(n for n in after["nodes"] if n["name"] == "second")
    assert after["nodes"][second["inputs"][0][0]]["name"] == "first"
    assert "flat" in [n["name"] for n in after["nodes"]] and "back" not in [n["name"] for n in after["nodes"]]
    check_same_outputs(before, after, data_shape)
