"""A CPU without the kernels' features (forced with LCNN_CPU_FLAGS): a clear error, never SIGILL,
and training still works with MXNet operators."""
import textwrap

from conftest import PY, run

OLD_CPU = {"LCNN_CPU_FLAGS": "fpu sse sse2 sse4_2 avx"}  # an AVX-only CPU (Sandy Bridge)

PYTHON_CHECK = textwrap.dedent("""
    import mxnet as mx, numpy as np
    from mxnet import gluon
    from lcnn_gluon import fit, ops
    from lcnn_gluon import nn as lnn
    try:
        ops.load()
    except RuntimeError as e:
        print("load refused:", e)
    assert not ops.available()
    net = gluon.nn.HybridSequential()
    net.add(lnn.LookupConv2D(6, 3, padding=1, dictionary_size=3, lambda_=0.5, initial_sparsity=0.3),
            gluon.nn.BatchNorm(), gluon.nn.Activation("relu"), gluon.nn.Dense(4))
    net.initialize(mx.init.Xavier())
    net.hybridize()
    optimizer = lnn.optimizer_for("sgd", [mx.cpu()], 0.9)
    trainer = gluon.Trainer(net.collect_params(), optimizer, dict(learning_rate=0.5, momentum=0.9))
    batch = mx.io.DataBatch([mx.nd.random.normal(shape=(8, 2, 6, 6))], [mx.nd.array(np.arange(8) % 4)])
    losses = [fit.train_step(net, trainer, gluon.loss.SoftmaxCrossEntropyLoss(), lnn.lookup_layers(net),
                             batch, [mx.cpu()], 8)[2][0].mean().asscalar() for _ in range(15)]
    layer = lnn.lookup_layers(net)[0]
    dead = layer.alive.data().asnumpy() == 0
    assert dead.any() and (layer.lookup.data().asnumpy()[dead] == 0).all()
    print("optimizer", optimizer, "loss", losses[0], "->", losses[-1])
    assert losses[-1] < losses[0]
""")


def test_python_refuses_the_library_and_training_falls_back():
    out = run(PY, "-c", PYTHON_CHECK, env=OLD_CPU).stdout
    assert "load refused: liblcnn_ops.so needs a CPU with AVX2 and FMA; this CPU lacks AVX2, FMA" in out
    assert "optimizer sgd loss" in out  # not lookupsgd: the MXNet-operator form of the rule


def test_the_library_itself_refuses_to_initialise(lcnn_ops):
    """Past the Python check (a direct mx.library.load): the library's initialize() refuses,
    as an MXNetError, and the process goes on."""
    code = textwrap.dedent(f"""
        import mxnet as mx
        try:
            mx.library.load({lcnn_ops!r}, verbose=False)
        except mx.MXNetError as e:
            print("refused:", str(e).strip().splitlines()[-1])
        print("alive", hasattr(mx.nd, "lcnn_lookup_conv"))
    """)
    out = run(PY, "-c", code, env=OLD_CPU).stdout
    assert "liblcnn_ops needs a CPU with avx2 fma; this CPU lacks avx2, fma" in out
    assert "alive False" in out


def test_the_predictor_refuses_with_a_message(lcnn_ops, tmp_path):
    from lcnn_gluon import ops
    proc = run(ops.path(ops.PREDICTOR), "--symbol", tmp_path / "x-symbol.json", "--params",
               tmp_path / "x-0000.params", "--library", lcnn_ops, "--input", tmp_path / "x.npy",
               env=OLD_CPU, check=False)
    assert proc.returncode == 2, proc.stdout
    assert "this CPU lacks avx2, fma" in proc.stdout
