"""The operator's parallel and batched plans give the dense layer's numbers: every lookup-layer
shape of the four presets, batch 1 and 16, 1 and 2 threads, every kernel set this host runs (a
fresh process per thread count and set: OpenMP reads the count at start, the library chooses
its kernels when it loads)."""
import json
import textwrap

import pytest
from conftest import KERNEL_SETS, PY, run

# The lookup layers of the presets at their input sizes: (m, n, k, kernel, stride, pad, input size).
# n is capped at 48 and fc6/fc7's k and m cut to keep the test short: n only lengthens the loop
# over channels, and every plan path (tiles, tile-major, gathers, batched products, phase
# splits, phases skipped, packed and in-place product strips, compact rows) is still taken.
SHAPES = {
    "alexnet conv1": (3, 48, 3, 11, 4, 2, 224), "alexnet conv2 fast": (64, 48, 30, 5, 1, 2, 27),
    "alexnet conv2 accurate": (64, 48, 500, 5, 1, 2, 27), "alexnet conv3": (192, 48, 30, 3, 1, 1, 13),
    "alexnet conv5 accurate": (256, 48, 500, 3, 1, 1, 13), "alexnet fc6": (256, 48, 64, 6, 1, 0, 6),
    "alexnet fc7": (1024, 48, 128, 1, 1, 0, 1), "resnet conv1": (3, 48, 3, 7, 2, 3, 224),
    "resnet stage1": (64, 48, 16, 3, 1, 1, 56), "resnet stage2 stride": (64, 48, 32, 3, 2, 1, 56),
    "resnet stage3 accurate": (256, 48, 512, 3, 1, 1, 14), "resnet stage4": (512, 48, 128, 3, 1, 1, 7),
    # kernels narrower than their stride reach only some phases: the export's 1x1 shortcut
    # (one phase), and a 2x2 kernel of stride 3 (two runs of two phases)
    "resnet shortcut": (64, 48, 128, 1, 2, 0, 56), "kernel 2 stride 3": (16, 8, 24, 2, 3, 1, 20),
}

SCRIPT = textwrap.dedent("""
    import json, sys
    import mxnet as mx
    import numpy as np
    from lcnn_gluon import export, ops
    from lcnn_gluon import nn as lnn
    print("kernels", ops.kernel_isa())
    errors = {}
    for name, (m, n, k, kernel, stride, pad, size) in json.loads(sys.argv[1]).items():
        layer = lnn.LookupConv2D(n, kernel, stride, pad, dictionary_size=k, in_channels=m)
        layer.initialize()
        lnn.set_random_lookup(layer, 0.05 if k > 8 else 0.3, seed=m + n + k)
        layer.bias.set_data(mx.nd.random.normal(shape=(n,)))
        op = export.SparseLookup(layer, None, None, relu=True)
        for batch in (1, 16):
            x = mx.nd.random.normal(shape=(batch, m, size, size))
            ref = mx.nd.relu(layer(x)).asnumpy()
            out = op(x).asnumpy()
            errors[f"{name} batch {batch}"] = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-6))
    print(json.dumps(errors))
""")


@pytest.mark.parametrize("isa", KERNEL_SETS)
@pytest.mark.parametrize("threads", ["1", "2"])
def test_parallel_and_batched_plans_equal_the_dense_layer(lcnn_ops, threads, isa):
    out = run(PY, "-c", SCRIPT, json.dumps(SHAPES), env={"OMP_NUM_THREADS": threads, "LCNN_ISA": isa},
              timeout=900).stdout
    assert f"kernels {isa}" in out
    errors = json.loads(out.strip().splitlines()[-1])
    assert len(errors) == 2 * len(SHAPES)
    bad = {name: e for name, e in errors.items() if not e <= 1e-4}
    assert not bad, bad
