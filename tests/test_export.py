"""Sparse and dense export: the exported models equal the training form; the C++ predictor
prints what Python computes."""
import json
import os
import re

import cv2
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn
from conftest import KERNEL_SETS, PY, run

import lcnn_gluon
from lcnn_gluon import chain, checkpoint, export, ops, tree
from lcnn_gluon import nn as lnn


def random_lcnn(name, density=0.1, classes=10):
    """A preset with random sparse lookups and non-trivial BatchNorm statistics."""
    mx.random.seed(1)
    net = lcnn_gluon.get_model(name, classes=classes)
    net.initialize(mx.init.Xavier())
    shape = (1, 28, 28) if name.startswith("lenet") else (3, 224, 224)
    net(mx.nd.zeros((1,) + shape))
    for i, layer in enumerate(lnn.lookup_layers(net)):
        lnn.set_random_lookup(layer, density, seed=i)
    for p in net.collect_params(".*running_var").values():
        p.set_data(mx.nd.random.uniform(0.5, 2.0, shape=p.shape))
    for p in net.collect_params(".*running_mean|.*beta").values():
        p.set_data(mx.nd.random.normal(scale=0.1, shape=p.shape))
    return net, shape


@pytest.mark.parametrize("name", ["lenet_lcnn_fast", "lenet_lcnn_accurate", "alexnet_lcnn_fast",
                                  "resnet18_lcnn_fast", "resnet18_lcnn_accurate"])
def test_exported_network_equals_training_form(lcnn_ops, tmp_path, name):
    net, shape = random_lcnn(name)
    x = mx.nd.random.normal(shape=(2,) + shape)
    reference = net(x).asnumpy()
    for kind, convert in (("sparse", export.sparsify), ("dense", export.densify)):
        prefix = str(tmp_path / kind)
        meta = export.export(convert(net), prefix, shape,
                             dict(library="liblcnn_ops.so" if kind == "sparse" else None))
        with open(meta["symbol"]) as f:
            symbol = f.read()
        on_operator = '"op": "lcnn_lookup_conv"' in symbol or '"op": "lcnn_lookup_chain"' in symbol
        assert on_operator == (kind == "sparse")
        # dropout is the identity at inference, and so is a flatten and reshape of a 1x1 map
        # between fully connected layers (lcnn_gluon/identities.py): none are left
        assert '"op": "Dropout"' not in symbol and '"op": "Reshape"' not in symbol
        if kind == "sparse" and name.startswith("resnet"):  # shortcut + ReLU fused into the op
            assert '"op": "elemwise_add"' not in symbol
            assert any(layer.get("residual") == "1" for layer in chain.lookup_layers(json.loads(symbol)))
        if kind == "sparse" and name.startswith("alexnet"):  # the chain gives the classifier's output flat
            assert '"op": "Flatten"' not in symbol and '"flat_outputs": "0"' in symbol
        out = export.load_exported(prefix)(x).asnumpy()
        err = np.abs(out - reference).max() / np.abs(reference).max()
        assert err <= 1e-4, (kind, err)


def test_sparsify_at_an_input_shape_runs_dense_the_layers_that_count_more_as_lookups(lcnn_ops, tmp_path):
    shape = (8, 16, 16)
    net = nn.HybridSequential()
    # the first counts more as lookups than dense (stride 2, k = 4m; test_flops), the second less
    net.add(lnn.LookupConv2D(16, 3, strides=2, padding=1, dictionary_size=32, in_channels=8),
            nn.BatchNorm(), nn.Activation("relu"),
            lnn.LookupConv2D(16, 3, padding=1, dictionary_size=4, in_channels=16))
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1,) + shape))  # BatchNorm's shapes
    for i, layer in enumerate(lnn.lookup_layers(net)):
        lnn.set_random_lookup(layer, 0.05, seed=i)
    net[1].running_var.set_data(mx.nd.random.uniform(0.5, 2.0, shape=(16,)))
    for name in ("running_mean", "beta", "gamma"):
        getattr(net[1], name).set_data(mx.nd.random.uniform(-1.0, 1.0, shape=(16,)))
    kinds = [type(b).__name__ for b in export.sparsify(net)._children.values()]
    assert kinds == ["SparseLookup", "SparseLookup"]  # no shape: every layer on the operator
    sparse = export.sparsify(net, shape)
    kinds = [type(b).__name__ for b in sparse._children.values()]
    assert kinds == ["Conv2D", "SparseLookup"]  # the BatchNorm and the ReLU folded into the Conv2D
    assert sparse[0].act is not None and sparse[0].act._act_type == "relu"
    meta = export.export(sparse, str(tmp_path / "mixed"), shape, {}, reference=net)
    assert meta["check"] <= 1e-4
    # a ReLU negative slope would show: some of the BatchNorm's outputs are negative before it
    x = mx.nd.random.normal(shape=(2,) + shape)
    assert (net[1](net[0](x)).asnumpy() < 0).mean() > 0.2
    np.testing.assert_allclose(sparse(x).asnumpy(), net(x).asnumpy(), rtol=1e-4, atol=1e-4)


def test_sparsify_runs_plain_dense_layers_on_the_operator(lcnn_ops):
    net = nn.HybridSequential()
    net.add(nn.Dense(12, activation="relu"), nn.Dense(9, activation="tanh"),
            nn.Dense(7, flatten=False), nn.Dense(5))
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(3, 4, 2, 2))
    reference = net(x).asnumpy()
    sparse = export.sparsify(net)
    # a tanh and a non-flattening layer are not what the operator computes: they stay
    assert [type(b).__name__ for b in sparse._children.values()] == ["SparseLookup", "Dense", "Dense",
                                                                    "SparseLookup"]
    assert sparse[0].attrs["act"] == "relu" and sparse[3].attrs["act"] == "none"
    for batch in (1, 3):  # the operator's matrix-vector and batched paths
        np.testing.assert_allclose(sparse(x[:batch]).asnumpy(), reference[:batch], rtol=1e-4, atol=1e-5)


def test_sparsify_fuses_the_shortcut_of_gluon_resnet_blocks(lcnn_ops):
    from mxnet.gluon.model_zoo import vision
    mx.random.seed(2)
    net = vision.resnet18_v1(classes=10)
    lcnn_gluon.convert(net, dictionary_size=16)
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(2, 3, 64, 64))
    net(x)
    for i, layer in enumerate(lnn.lookup_layers(net)):
        lnn.set_random_lookup(layer, 0.05, seed=i)
    sparse = export.sparsify(net)
    blocks = [b for b in sparse.features._children.values() for b in b._children.values()]
    assert sum(isinstance(b, export.SparseResidualBlock) for b in blocks) == 8
    reference = net(x).asnumpy()
    err = np.abs(sparse(x).asnumpy() - reference).max() / np.abs(reference).max()
    assert err <= 1e-4


def test_sparsify_runs_1x1_shortcuts_of_large_maps_on_the_operator(lcnn_ops):
    net, _ = random_lcnn("resnet18_lcnn_fast", density=0.05)
    x = mx.nd.random.normal(shape=(2, 3, 112, 112))
    reference = net(x).asnumpy()
    # at 112x112 the shortcuts' maps are 14x14, 7x7 (OPERATOR_MIN_PIXELS) and 4x4: the first two
    # run on the operator with their BatchNorm folded, the last stays in MXNet; without the input
    # shape all stay
    for data_shape, kinds in (((3, 112, 112), [["SparseLookup"], ["SparseLookup"], ["Conv2D", "BatchNorm"]]),
                              (None, [["Conv2D", "BatchNorm"]] * 3)):
        sparse = export.sparsify(net, data_shape)
        shortcuts = [list(b.downsample._children.values()) for b in tree.blocks(sparse)
                     if isinstance(b, export.SparseResidualBlock) and b.downsample is not None]
        assert [[type(c).__name__ for c in s] for s in shortcuts] == kinds
        assert data_shape is None or shortcuts[0][0].attrs["stride"] == (2, 2)
        # on the operator, a shortcut's BatchNorm scale is in its D and its shift in the block's
        # last layer: coefficients 1 and biases 0, the form whose product is its output
        for op in (s[0] for s in shortcuts if isinstance(s[0], export.SparseLookup)):
            assert (op.coefs.data().asnumpy() == 1).all() and (op.bias.data().asnumpy() == 0).all()
        err = np.abs(sparse(x).asnumpy() - reference).max() / np.abs(reference).max()
        assert err <= 1e-4


def test_only_strided_1x1_convolutions_of_large_maps_run_on_the_operator(lcnn_ops):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 1, in_channels=4), nn.BatchNorm(), nn.Conv2D(8, 1, strides=2), nn.BatchNorm(),
            nn.Activation("relu"), nn.Conv2D(8, 3, strides=2, padding=1))
    net.initialize(mx.init.Xavier())
    x = mx.nd.random.normal(shape=(2, 4, 32, 32))
    net(x)
    for bn in (net[1], net[3]):
        bn.running_mean.set_data(mx.nd.random.normal(shape=(8,)))
        bn.running_var.set_data(mx.nd.random.uniform(0.5, 2, shape=(8,)))
    reference = net(x).asnumpy()
    # stride 1 (not measured) and a 3x3 kernel stay; the strided 1x1 (16x16 output) takes its
    # BatchNorm and ReLU
    sparse = export.sparsify(net, data_shape=(4, 32, 32))
    assert [type(b).__name__ for b in sparse._children.values()] == ["Conv2D", "BatchNorm", "SparseLookup", "Conv2D"]
    assert sparse[2].attrs["act"] == "relu" and sparse[2].attrs["stride"] == (2, 2)
    np.testing.assert_allclose(sparse(x).asnumpy(), reference, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def exported_lenet(lcnn_ops, mnist_sample, tmp_path_factory):
    """A lenet_lcnn_fast checkpoint exported by the command line, and a test digit."""
    folder = tmp_path_factory.mktemp("export")
    net, shape = random_lcnn("lenet_lcnn_fast", density=0.2)
    meta = dict(network="lenet_lcnn_fast", num_classes=10, dataset="mnist", image_shape=list(shape))
    params = checkpoint.save(str(folder / "fast"), 5, net, None, meta)
    prefix = str(folder / "exported")
    out = run(PY, "-m", "lcnn_gluon.export", "--network", "lenet_lcnn_fast", "--params", params,
              "--output", prefix).stdout
    assert "max |exported - training form|" in out
    from lcnn_gluon.mnist import load_split
    digits, _ = load_split(mnist_sample, "t10k")
    cv2.imwrite(str(folder / "digit.png"), digits[7])
    pixels = (digits[7].astype(np.float32) - 33.318) / 78.567
    np.save(str(folder / "digit.npy"), pixels[None].astype(np.float32))
    return prefix, folder, pixels


def test_export_cli_chains_the_lookup_layers_unless_told_not_to(exported_lenet, tmp_path):
    prefix, folder, pixels = exported_lenet
    with open(prefix + "-symbol.json") as f:
        assert '"op": "lcnn_lookup_chain"' in f.read()  # LeNet's two convolutions (the predictor runs it)
    net, shape = random_lcnn("lenet_lcnn_fast", density=0.2)
    meta = dict(network="lenet_lcnn_fast", num_classes=10, dataset="mnist", image_shape=list(shape))
    params = checkpoint.save(str(tmp_path / "fast"), 5, net, None, meta)
    for flag, chained in (([], True), (["--no-chains"], False)):
        run(PY, "-m", "lcnn_gluon.export", "--network", "lenet_lcnn_fast", "--params", params,
            "--output", str(tmp_path / f"out{chained}"), *flag)
        with open(tmp_path / f"out{chained}-symbol.json") as f:
            assert ('"op": "lcnn_lookup_chain"' in f.read()) == chained
    x = mx.nd.array(pixels[None, None])
    a, b = (export.load_exported(str(tmp_path / f"out{c}"))(x).asnumpy() for c in (True, False))
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def predictor(prefix, *args, library=True, env=None):
    cmd = [ops.path(ops.PREDICTOR), "--symbol", prefix + "-symbol.json", "--params", prefix + "-0000.params"]
    if library:
        cmd += ["--library", ops.path()]
    return run(*cmd, *args, check=False, env=env)


@pytest.mark.parametrize("source", ["png", "npy"])
def test_cpp_predictor_prints_what_python_computes(exported_lenet, source):
    prefix, folder, pixels = exported_lenet
    scores = mx.nd.softmax(export.load_exported(prefix)(mx.nd.array(pixels[None, None]))).asnumpy()[0]
    expected = np.argsort(-scores)[:5]
    args = ["--input", folder / f"digit.{source}", "--repeat", "3"]
    if source == "png":
        args += ["--shape", "1,28,28", "--mean", "33.318", "--std", "78.567"]
    proc = predictor(prefix, *args)
    assert proc.returncode == 0, proc.stdout
    found = re.findall(r"\d+\. class (\d+) score ([\d.]+)", proc.stdout)
    assert [int(c) for c, _ in found] == list(expected)
    np.testing.assert_allclose([float(s) for _, s in found], scores[expected], atol=1e-4)
    assert re.search(r"latency: [\d.]+ ms \(median of 3 runs\)", proc.stdout)


def test_predictor_errors_are_clear(exported_lenet):
    prefix, folder, _ = exported_lenet
    proc = predictor(prefix, "--input", folder / "digit.npy", library=False)
    # (the export's first operator of the library: a chain of LeNet's two convolutions)
    assert proc.returncode == 2 and re.search(r"lcnn_lookup_(conv|chain) is not registered", proc.stdout)
    proc = predictor(prefix, "--input", folder / "digit.png", "--shape", "1,28")
    assert proc.returncode == 2 and "--shape C,H,W is required" in proc.stdout
    proc = predictor(prefix, "--input", folder / "missing.npy")
    assert proc.returncode == 2 and "cannot read" in proc.stdout


def test_export_refuses_params_of_another_network(exported_lenet, tmp_path):
    _, folder, _ = exported_lenet
    proc = run(PY, "-m", "lcnn_gluon.export", "--network", "lenet_lcnn_accurate", "--params",
               folder / "fast-0005.params", "--output", tmp_path / "x", check=False)
    assert proc.returncode == 2 and "holds network 'lenet_lcnn_fast'" in proc.stdout
    assert not os.path.exists(tmp_path / "x-symbol.json")


def test_export_cli_fails_on_a_diverged_checkpoint(lcnn_ops, tmp_path):
    """A checkpoint whose outputs are nan: exit status 2 naming the output, no exported files."""
    net, shape = random_lcnn("lenet_lcnn_fast")
    net.output.bias.set_data(net.output.bias.data() * np.nan)
    meta = dict(network="lenet_lcnn_fast", num_classes=10, dataset="mnist", image_shape=list(shape))
    params = checkpoint.save(str(tmp_path / "nan"), 1, net, None, meta)
    proc = run(PY, "-m", "lcnn_gluon.export", "--network", "lenet_lcnn_fast", "--params", params,
               "--output", tmp_path / "out" / "x", check=False)
    assert proc.returncode == 2 and "out/x: the training form's output is not finite" in proc.stdout
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


@pytest.mark.parametrize("attr,value,message", [
    ("stride", "(2147483647, 1)", "must be in [1, 65536]"),
    ("pad", "(2147483600, 2147483600)", "must be in [0, 65536]"),
    ("pad", "(60000, 60000)", "needs planes of more than"),
    ("dictionary_layout", "mk", "'mk' is for fully connected layers only"),
    ("dictionary_layout", "nk", "dictionary_layout must be 'km' or 'mk', got 'nk'"),
])
def test_crafted_symbol_attributes_are_errors(exported_lenet, tmp_path, attr, value, message):
    """A -symbol.json whose operator attributes overflow 32-bit sizes or do not fit the layer:
    MXNetError in Python and a clean exit in the C++ predictor, never an out-of-bounds access."""
    import shutil
    prefix, folder, pixels = exported_lenet
    crafted = str(tmp_path / "crafted")
    graph = json.loads(open(prefix + "-symbol.json").read())
    node = next(n for n in graph["nodes"] if n["op"] == "lcnn_lookup_chain")  # LeNet's convolutions
    layers = chain.layer_fields(node["attrs"])
    layers[0][attr] = value
    node["attrs"]["layers"] = chain.layers_attribute(layers)
    with open(crafted + "-symbol.json", "w") as f:
        json.dump(graph, f)
    for suffix in ("-0000.params", "-meta.json"):
        shutil.copy(prefix + suffix, crafted + suffix)
    with pytest.raises(mx.base.MXNetError, match=re.escape(message)):
        export.load_exported(crafted)(mx.nd.array(pixels[None, None])).wait_to_read()
    proc = predictor(crafted, "--input", folder / "digit.npy")
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("change,message", [
    (["--image-shape", "1,x,28"], "--image-shape 1,x,28: must be C,H,W positive integers"),
    (["--image-shape", "1,-28,28"], "--image-shape 1,-28,28: must be C,H,W positive integers"),
    (["--image-shape", "1,28"], "--image-shape 1,28: must be C,H,W positive integers"),
    (["--output", "/proc/no/such/x"], "/proc/no/such/x"),
    ("bad-json", "fast-0005.json: not valid JSON"),
])
def test_export_errors_name_the_input(exported_lenet, tmp_path, change, message):
    import shutil
    _, folder, _ = exported_lenet
    params = str(tmp_path / "fast-0005.params")
    shutil.copy(folder / "fast-0005.params", params)
    shutil.copy(folder / "fast-0005.json", tmp_path / "fast-0005.json")
    args = ["--network", "lenet_lcnn_fast", "--params", params, "--output", str(tmp_path / "out" / "x")]
    if change == "bad-json":
        (tmp_path / "fast-0005.json").write_text('{"network": "lenet_lcnn_fast", ')
    else:
        args += change
    proc = run(PY, "-m", "lcnn_gluon.export", *args, check=False)
    assert proc.returncode == 2 and message in proc.stdout, proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout
    assert not os.path.exists(tmp_path / "out") or os.listdir(tmp_path / "out") == []


def test_cpp_predictor_takes_a_batch_and_threads(exported_lenet, monkeypatch):
    prefix, folder, pixels = exported_lenet
    monkeypatch.delenv("MXNET_ENGINE_TYPE", raising=False)
    scores = mx.nd.softmax(export.load_exported(prefix)(mx.nd.array(pixels[None, None]))).asnumpy()[0]
    proc = predictor(prefix, "--input", folder / "digit.npy", "--batch", "16", "--threads", "2", "--repeat", "2")
    assert proc.returncode == 0, proc.stdout
    found = re.findall(r"\d+\. class (\d+) score ([\d.]+)", proc.stdout)
    np.testing.assert_allclose([float(s) for _, s in found], np.sort(scores)[::-1][:5], atol=1e-4)
    assert re.search(r"batch 16, 2 threads: [\d.]+ ms per batch, [\d.]+ ms per image", proc.stdout)
    # NaiveEngine unless the user chose an engine (MXNet logs the one it starts)
    assert "using engine: NaiveEngine" in proc.stdout
    proc = predictor(prefix, "--input", folder / "digit.npy", "--threads", "2",
                     env={"MXNET_ENGINE_TYPE": "ThreadedEnginePerDevice"})
    assert proc.returncode == 0 and "using engine: ThreadedEnginePerDevice" in proc.stdout, proc.stdout
    proc = predictor(prefix, "--input", folder / "digit.npy", "--batch", "0")
    assert proc.returncode == 2 and "--batch 0: must be a positive integer" in proc.stdout


@pytest.mark.parametrize("isa", KERNEL_SETS)
def test_cpp_predictor_reports_and_honours_the_kernel_set(exported_lenet, isa):
    prefix, folder, pixels = exported_lenet
    scores = mx.nd.softmax(export.load_exported(prefix)(mx.nd.array(pixels[None, None]))).asnumpy()[0]
    proc = predictor(prefix, "--input", folder / "digit.npy", "--batch", "16", env={"LCNN_ISA": isa})
    assert proc.returncode == 0, proc.stdout
    assert f"kernels: {isa}\n" in proc.stdout
    found = re.findall(r"\d+\. class (\d+) score ([\d.]+)", proc.stdout)
    np.testing.assert_allclose([float(s) for _, s in found], np.sort(scores)[::-1][:5], atol=1e-4)
