"""The operator sizes the row blocks of its tile-major lookups by a core's L1 data cache
(operators/core_caches.h): what the CPU reports, or LCNN_L1_BYTES."""
import os

import mxnet as mx
import pytest
from test_ops import compare, random_layer

from lcnn_gluon import nn as lnn
from lcnn_gluon import ops

L1_VARIABLE = "LCNN_L1_BYTES"
UNIQUE_SEED = 7919000


def tile_major_layer(filters: int):
    """S over 256 KB and 16+ entries a channel: tile-major, its S rows in 6 blocks of half a
    32 KB L1, in one under a 256 KB L1. Entries of its own (a seed no other test uses): a plan of
    the same layer built earlier in the process would be taken from the operator's pool."""
    layer = random_layer(8, filters, 64, 3, 1, 1, 40)
    lnn.set_random_lookup(layer, 0.3, seed=UNIQUE_SEED + filters)
    return layer


@pytest.fixture
def l1_bytes():
    """Sets LCNN_L1_BYTES for the test (read whenever a plan is built), restored after."""
    before = os.environ.get(L1_VARIABLE)
    yield lambda value: os.environ.__setitem__(L1_VARIABLE, value)
    if before is None:
        os.environ.pop(L1_VARIABLE, None)
    else:
        os.environ[L1_VARIABLE] = before


@pytest.mark.parametrize("l1,filters,blocks", [("32768", 12, True), ("262144", 13, False)])
def test_row_blocks_follow_the_l1_size(lcnn_ops, l1_bytes, l1, filters, blocks):
    l1_bytes(l1)
    before = ops.plans_built("row blocks")
    compare(tile_major_layer(filters), mx.nd.random.normal(shape=(1, 8, 40, 40)))
    assert ops.plans_built("row blocks") - before == int(blocks)


def test_an_l1_size_that_is_not_a_number_is_an_error(lcnn_ops, l1_bytes):
    l1_bytes("lots")
    with pytest.raises(mx.base.MXNetError, match="LCNN_L1_BYTES='lots' is not a number of bytes"):
        compare(tile_major_layer(14), mx.nd.random.normal(shape=(1, 8, 40, 40)))
