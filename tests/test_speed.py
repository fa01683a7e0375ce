"""Timing in turns (lcnn_gluon.speed.in_turns): every network gets a time and its fastest form."""
import time

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from lcnn_gluon import speed


def _mlp(width: int, layers: int) -> nn.HybridSequential:
    net = nn.HybridSequential()
    for _ in range(layers):
        net.add(nn.Dense(width, activation="relu"))
    net.initialize()
    return net


def test_in_turns_times_every_network_in_its_fastest_form(tmp_path):
    x = mx.nd.random.normal(shape=(8, 64))
    prefixes = {"small": speed.export_copy(_mlp(16, 1), x, str(tmp_path / "small")),
                "large": speed.export_copy(_mlp(1024, 4), x, str(tmp_path / "large"))}
    timed = speed.in_turns(prefixes, x, runs=6, turns=3)
    assert set(timed) == {"small", "large"}
    for ms, form in timed.values():
        assert ms > 0 and form in ("plain", "oneDNN graph", "executor")
    assert timed["large"][0] > timed["small"][0]


def test_every_form_computes_the_network(tmp_path):
    net = _mlp(32, 2)
    x = mx.nd.random.normal(shape=(4, 64))
    want = net(x).asnumpy()
    calls = speed.forms(speed.export_copy(net, x, str(tmp_path)), x)
    assert set(calls) == {"plain", "oneDNN graph", "executor"}
    for form, call in calls.items():
        assert np.allclose(call().asnumpy(), want, rtol=1e-5, atol=1e-6), form


def test_warm_calls_until_its_time_has_passed():
    calls = []
    assert speed.warm(lambda: calls.append(1), ms=0.0) == 1 == len(calls)
    start = time.perf_counter()
    made = speed.warm(lambda: time.sleep(0.002), ms=10.0)
    assert (time.perf_counter() - start) * 1e3 >= 10.0
    assert 2 <= made <= 6
