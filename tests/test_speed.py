"""Timing in turns (lcnn_gluon.speed.in_turns): every network gets a time and its faster form."""
import mxnet as mx
from mxnet.gluon import nn

from lcnn_gluon import speed


def _mlp(width: int, layers: int) -> nn.HybridSequential:
    net = nn.HybridSequential()
    for _ in range(layers):
        net.add(nn.Dense(width, activation="relu"))
    net.initialize()
    return net


def test_in_turns_times_every_network_in_its_faster_form(tmp_path):
    x = mx.nd.random.normal(shape=(8, 64))
    makers = {"small": speed.copies(_mlp(16, 1), x, str(tmp_path / "small")),
              "large": speed.copies(_mlp(1024, 4), x, str(tmp_path / "large"))}
    timed = speed.in_turns(makers, x, runs=6, turns=3)
    assert set(timed) == {"small", "large"}
    for ms, form in timed.values():
        assert ms > 0 and form in ("plain", "oneDNN graph")
    assert timed["large"][0] > timed["small"][0]
