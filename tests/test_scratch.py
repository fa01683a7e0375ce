"""The operator's layers share their scratch buffers (S and the tile-major partial sums) between
calls (operators/lookup_conv_scratch.h): each call must still see zero padding and nothing of
another layer's values."""
import mxnet as mx
import pytest
from test_ops import compare, random_layer

# (m, n, k, kernel, stride, pad, size): pairs of layers whose S (and split input) have the same
# number of floats, where the first writes the floats that are the second's zero padding. A
# buffer lent by size alone would hand the second the first's values.
SAME_SIZE_OTHER_PADDING = [
    # stride 1: S of 10x10 padded planes
    ((6, 7, 8, 3, 1, 0, 10), (6, 7, 8, 3, 1, 1, 8)),
    ((6, 7, 8, 3, 1, 1, 8), (6, 7, 8, 3, 1, 0, 10)),
    # stride 2, k > m: the input split into phases of 9x9 first (its padding read by the product)
    ((4, 6, 40, 3, 2, 0, 18), (4, 6, 40, 3, 2, 1, 16)),
    ((4, 6, 40, 3, 2, 1, 16), (4, 6, 40, 3, 2, 0, 18)),
]
# Tile-major layers (S over 256 KB, 16+ entries a channel) of different sizes, alternating: the
# partial sums of every channel are one buffer for all layers, written before they are read.
TILE_MAJOR = [(8, 12, 64, 3, 1, 1, 40), (8, 20, 64, 3, 1, 1, 44), (8, 12, 96, 3, 1, 1, 40)]


@pytest.mark.parametrize("first,second", SAME_SIZE_OTHER_PADDING)
@pytest.mark.parametrize("batch", [1, 3])
def test_a_layer_after_one_of_other_padding_sees_zero_padding(lcnn_ops, first, second, batch):
    layers = [random_layer(*first), random_layer(*second)]
    for _ in range(3):  # each call after the other layer's
        for layer, shape in zip(layers, (first, second)):
            m, size = shape[0], shape[-1]
            compare(layer, mx.nd.random.normal(shape=(batch, m, size, size)))


@pytest.mark.parametrize("batch", [1, 2])
def test_layers_of_one_layout_and_tile_major_layers_alternating(lcnn_ops, batch):
    """Layers of the same S layout (one buffer between them) and tile-major layers of several
    sizes, called in turn, each with other dictionaries, entries and inputs."""
    shapes = [(6, 7, 8, 3, 1, 1, 8), (6, 9, 8, 3, 1, 1, 8)] + TILE_MAJOR
    layers = [random_layer(*shape) for shape in shapes]
    for _ in range(2):
        for layer, shape in zip(layers, shapes):
            m, size = shape[0], shape[-1]
            compare(layer, mx.nd.random.normal(shape=(batch, m, size, size)))
