"""A random ResNet-18-fast exported twice, its runs of lookup layers as ``lcnn_lookup_chain``
operators and layer by layer, for the tests' subprocess scripts (tests/test_chain.py,
tests/test_weight_versions.py; they put tests/ on sys.path)."""
import tempfile

import mxnet as mx

from lcnn_gluon import export, get_model, ops
from lcnn_gluon import nn as lnn


def chained_and_plain(shape: tuple, density: float = 0.05) -> tuple:
    """``(chained, plain, meta)``: the two exports of a random ResNet-18-fast at input ``shape``
    (C, H, W), reloaded and hybridized with static memory and shapes; ``meta`` the chained
    export's."""
    net = get_model("resnet18_lcnn_fast", classes=10)
    net.initialize(mx.init.Xavier())
    for i, layer in enumerate(lnn.lookup_layers(net)):
        lnn.set_random_lookup(layer, density, seed=i)
    folder = tempfile.mkdtemp()
    sparse = export.sparsify(net, shape)
    meta = export.export(sparse, folder + "/chained", shape, dict(library=ops.LIBRARY), reference=net)
    export.export(sparse, folder + "/plain", shape, dict(library=ops.LIBRARY), reference=net, chains=False)
    chained, plain = export.load_exported(folder + "/chained"), export.load_exported(folder + "/plain")
    for block in (chained, plain):
        block.hybridize(static_alloc=True, static_shape=True)
    return chained, plain, meta
