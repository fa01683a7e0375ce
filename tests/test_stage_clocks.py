"""The operator's stage clocks (`make -C operators clocks`, operators/lookup_conv_clocks.h): a real
build run by the real lcnn-predict, whose totals are consistent with each other; the default
build prints none."""
import json
import os
import sys

import numpy as np
import pytest

from conftest import ROOT
from lcnn_gluon import export, ops
from test_export import random_lcnn

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import stage_profile  # noqa: E402  (benchmarks/, beside bench_inference.py)

CALLS = 20


@pytest.fixture(scope="module")
def exported(lcnn_ops, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clocks")
    net, shape = random_lcnn("lenet_lcnn_fast", density=0.2)
    prefix = str(folder / "lenet")
    export.export(export.sparsify(net, shape), prefix, shape, dict(library=ops.LIBRARY), reference=net)
    image = str(folder / "input.npy")
    np.save(image, np.random.RandomState(0).standard_normal(shape).astype(np.float32))
    with open(prefix + "-symbol.json") as f:
        nodes = json.load(f)["nodes"]
    layers = sum(int(n["attrs"]["num_layers"]) if n["op"] == "lcnn_lookup_chain" else n["op"] == "lcnn_lookup_conv"
                 for n in nodes)
    chains = sum(n["op"] == "lcnn_lookup_chain" for n in nodes)
    return prefix, image, layers, chains


@pytest.mark.parametrize("batch", [1, 4])
def test_stage_clocks_add_up(exported, batch):
    # on one run's totals (warm-up call included), which hold however loaded the machine is
    prefix, image, layers, chains = exported
    build = stage_profile.build_clocks()
    for threads in (1, 2):
        ms, stages = stage_profile.clocked_run(prefix, image, batch, threads, CALLS, build)
        assert ms > 0
        assert stages["call of a layer"][0] == layers * (CALLS + 1)  # every layer's call, once a call
        assert stages["call of a chain (its layers' calls inside)"][0] == chains * (CALLS + 1)
        regions = {name: v for name, v in stages.items() if not name.startswith("call")}
        assert regions, stages
        for name, (count, team, wall, busy, idle) in regions.items():
            assert count > 0 and wall > 0 and busy > 0, (name, stages[name])
            assert busy <= team * wall * 1.01 + 1, (name, stages[name])  # no thread busy longer than its region
            assert -1 <= idle <= team * wall - busy + 1, (name, stages[name])
            if threads == 1:
                assert team == 1 and busy == pytest.approx(wall) and abs(idle) < 1, (name, stages[name])
        assert max(team for _, team, *_ in regions.values()) == threads
        if threads == 1:  # every region lies inside a layer's call
            assert sum(wall for _, _, wall, *_ in regions.values()) <= stages["call of a layer"][2]


def test_per_call_figures_drop_the_first_call(exported):
    # two runs differenced: the counts a call are exact (the times are for a quiet machine)
    prefix, image, layers, chains = exported
    _, stages = stage_profile.per_call(prefix, image, 1, 2, CALLS, stage_profile.build_clocks())
    assert stages["call of a layer"][0] == layers
    assert stages["call of a chain (its layers' calls inside)"][0] == chains


def test_the_default_build_has_no_clocks(exported):
    prefix, image, _, _ = exported
    with pytest.raises(RuntimeError, match="printed no stage clocks"):
        stage_profile.clocked_run(prefix, image, 1, 1, 2, build=os.path.dirname(ops.path()))
