"""The C++ operator library (``operators/``): where it is, building it, loading it once.

    import lcnn_gluon.ops
    lcnn_gluon.ops.load()        # registers mx.nd.lcnn_lookup_conv / F.lcnn_lookup_conv, and
                                 # the training kernels lcnn_lookup_threshold, _l1, _prune, _sgd

    python -m lcnn_gluon.ops --build     # the same as: make -C operators PYTHON=<this python>

The library is looked for in ``$LCNN_OPS_DIR``, then in the installed package
(``lcnn_gluon/_ops``), then in ``operators/build`` of a source checkout.

Its kernels use the CPU features listed in its ``BUILD_INFO`` (AVX2 and FMA): on a
CPU without them the first such instruction would kill the process, so :func:`load`
reads the CPU's flags first and raises a ``RuntimeError`` naming what is missing.
``LCNN_CPU_FLAGS`` (space- or comma-separated ``/proc/cpuinfo`` flag names) replaces
what the CPU reports here, and in the library's own check admits only the listed
features: tests use it to act as a CPU without AVX2, or without AVX-512.

The library holds its inference kernels once per instruction set and picks one when it
loads: AVX-512 where the CPU has it, AVX2 otherwise. ``LCNN_ISA=avx2`` forces the AVX2
kernels, ``LCNN_ISA=avx512`` requires the AVX-512 ones, and ``LCNN_ISA=avx2pair`` runs the
16-lane kernels on pairs of AVX2 registers (for tests on hosts without AVX-512);
:func:`kernel_isa` tells which set runs.
"""
from __future__ import annotations

import argparse
import ctypes
import logging
import os
import subprocess
import sys
from typing import Iterable, List, Optional

import mxnet as mx

LIBRARY = "liblcnn_ops.so"
PREDICTOR = "lcnn-predict"
CPU_FLAGS_ENV = "LCNN_CPU_FLAGS"
OP_NAME = "lcnn_lookup_conv"
_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.join(os.path.dirname(_HERE), "operators")
_loaded: Optional[str] = None
_unavailable: Optional[str] = None  # why load() failed, once tried by available()
log = logging.getLogger(__name__)


def build_dir() -> str:
    """The folder holding the built library, predictor and BUILD_INFO."""
    candidates = [os.environ.get("LCNN_OPS_DIR", ""), os.path.join(_HERE, "_ops"),
                  os.path.join(SOURCE_DIR, "build")]
    for folder in filter(None, candidates):
        if os.path.isfile(os.path.join(folder, LIBRARY)):
            return folder
    raise FileNotFoundError(
        f"{LIBRARY} is not built (looked in {', '.join(filter(None, candidates))}): run "
        f"`make -C operators PYTHON={sys.executable}` or `python -m lcnn_gluon.ops --build`")


def path(name: str = LIBRARY) -> str:
    """Absolute path of a built artefact: the library or ``lcnn-predict``."""
    return os.path.abspath(os.path.join(build_dir(), name))


def build_info(folder: str) -> dict:
    """The ``BUILD_INFO`` the Makefile writes beside the library: ``mxnet`` (version),
    ``mxnet_dir``, ``cpu_features`` (space-separated, needed by every kernel set) and
    ``avx512_features`` (needed by the ``avx512`` set only)."""
    info = os.path.join(folder, "BUILD_INFO")
    if not os.path.isfile(info):
        return {}
    with open(info) as f:
        return dict(line.split(" ", 1) for line in f.read().splitlines() if " " in line)


def cpu_flags() -> Optional[set]:
    """This CPU's feature flags (``/proc/cpuinfo``, or ``$LCNN_CPU_FLAGS``); None if unknown."""
    forced = os.environ.get(CPU_FLAGS_ENV)
    if forced is not None:
        return set(forced.replace(",", " ").split())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None  # not Linux: the library's initialize() checks instead


def missing_cpu_features(needed: Iterable[str]) -> List[str]:
    """The features of ``needed`` this CPU lacks (none when its flags cannot be read)."""
    flags = cpu_flags()
    return [] if flags is None else [f for f in needed if f not in flags]


def _check_loadable(folder: str) -> None:
    built = build_info(folder)
    if built.get("mxnet") != mx.__version__:
        raise RuntimeError(f"{folder}/{LIBRARY} was built for mxnet {built.get('mxnet', '(unknown)')}, "
                           f"this is mxnet {mx.__version__}: rebuild it with `make -C operators`")
    needed = built.get("cpu_features", "").split()
    missing = missing_cpu_features(needed)
    if missing:
        raise RuntimeError(f"{LIBRARY} needs a CPU with {' and '.join(f.upper() for f in needed)}; this CPU "
                           f"lacks {', '.join(missing).upper()} (lookup layers still train, with "
                           "MXNet operators; the sparse inference operator is unavailable)")


def load() -> str:
    """Load the library into this process (once); return its path."""
    global _loaded
    if _loaded is None:
        folder = build_dir()
        _check_loadable(folder)
        lib = path(LIBRARY)
        mx.library.load(lib, verbose=False)
        _loaded = lib
    return _loaded


def _loaded_library() -> ctypes.CDLL:
    return ctypes.CDLL(load())  # the handle of the copy MXNet loaded: same path, same library


def kernel_isa() -> str:
    """The kernel set the loaded library chose: ``avx512``, ``avx2`` or ``avx2pair``
    (loads the library first)."""
    library = _loaded_library()
    library.lcnn_kernel_isa.restype = ctypes.c_char_p
    return library.lcnn_kernel_isa().decode()


PLAN_KINDS = ("any", "aligned rows", "class tiles", "row blocks", "pooled rows", "transposed product",
              "identity lookups", "split depth", "halved class tiles")


def plans_built(kind: str = "any") -> int:
    """How many execution plans the operator has built in this process: one per layer, input
    shape and packed content, however often MXNet re-creates the operator's state. ``kind``
    counts only those whose S rows are aligned to registers, only those with class tiles, only
    those accumulating S's rows in several blocks, only those taking a fused 3x3 / stride-2
    max pooling in registers, only those taking the dictionary product transposed, or
    only those of a 1x1 strided layer whose P is the identity, whose product can be its output,
    only those whose threads split a small map's product by its depth, or only those whose class
    tiles take half the registers, their row blocks spanning more than L1 (docs/design.md)."""
    if kind not in PLAN_KINDS:
        raise ValueError(f"plans_built: kind must be one of {PLAN_KINDS}, got {kind!r}")
    library = _loaded_library()
    library.lcnn_plans_built.restype = ctypes.c_int64
    library.lcnn_plans_built.argtypes = [ctypes.c_int]
    return int(library.lcnn_plans_built(PLAN_KINDS.index(kind)))


def available() -> bool:
    """Whether the library is loaded or can be (the lookup layers' training kernels use it
    when it is; without it they fall back to MXNet operators, with a warning once)."""
    global _unavailable
    if _loaded is None and _unavailable is None:
        try:
            load()
        except (OSError, RuntimeError, mx.MXNetError) as err:
            _unavailable = str(err).strip().splitlines()[-1]
            log.warning("lcnn_gluon.ops unavailable (%s): lookup layers train with MXNet "
                        "operators, several times slower on large layers", _unavailable)
    return _loaded is not None


def build(python: str = sys.executable) -> None:
    """Build the library and predictor into ``operators/build``."""
    subprocess.run(["make", "-C", SOURCE_DIR, f"PYTHON={python}"], check=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="build with make -C operators")
    args = parser.parse_args(argv)
    if args.build:
        build()
    print(load())


if __name__ == "__main__":
    main()
