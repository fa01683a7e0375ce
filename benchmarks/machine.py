"""The machine's limits, measured when asked (a shared machine's figures drift within minutes):
one core's FMA peak (``fma_peak.cc``), the lookup stage's ceiling on one core
(``lookup_ceiling.cc``: the operator's tile kernel with S in L1) and the read bandwidth from
memory (``memory_bandwidth.cc``), and how fast two threads pass data to each other
(``core_sharing.cc``): each a small C++ program next to this file, compiled once per process and
run when asked. The first two are compiled for the kernel set the operator runs on this machine
(``lcnn_gluon.ops.kernel_isa()``: AVX-512 where the CPU has it, AVX2 otherwise), so that
peak and ceiling are those of the registers the kernels use."""
from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
OPERATORS = os.path.join(HERE, "..", "operators")  # the kernels lookup_ceiling.cc runs


# The operator's kernel sets (``LCNN_ISA`` names) as lookup_conv_isa.h names them.
KERNEL_SETS = {"avx2": "Avx2", "avx2pair": "Avx2Pair", "avx512": "Avx512"}


def _kernel_set_flags() -> list:
    """Compiler flags for the kernel set the loaded operator runs: its struct and -m flags
    (those of ``BUILD_INFO``)."""
    from lcnn_gluon import ops
    ops.load()
    name = ops.kernel_isa()
    wide = _feature_flags("avx512_features") if name == "avx512" else []
    return [f"-DLCNN_KERNEL_ISA={KERNEL_SETS[name]}", "-I", OPERATORS] + wide


def _feature_flags(key: str) -> list:
    """``-m`` flags for the CPU features ``BUILD_INFO`` lists under ``key`` (the Makefile's)."""
    from lcnn_gluon import ops
    return [f"-m{f}" for f in ops.build_info(ops.build_dir()).get(key, "").split()]


_COMPILED = {}  # (source, flags) -> the program, compiled once per process


def _measure(source: str, flags: list, env: Optional[dict] = None) -> float:
    """The first number the program ``source`` prints, compiled with ``flags``, run in ``env``
    (this process's environment if None)."""
    key = (source, tuple(flags))
    if key not in _COMPILED:
        folder = tempfile.mkdtemp(prefix="lcnn-machine-")
        atexit.register(shutil.rmtree, folder, True)
        exe = os.path.join(folder, "measure")
        subprocess.run([os.environ.get("CXX", "g++"), "-std=c++17", "-O2", *_feature_flags("cpu_features"), *flags, "-o", exe,
                        os.path.join(HERE, source)], check=True)
        _COMPILED[key] = exe
    return float(subprocess.run([_COMPILED[key]], capture_output=True, text=True, check=True, env=env).stdout.split()[0])


def fma_peak() -> float:
    """One core's single-precision FMA peak at the operator's register width, GFLOP/s."""
    return _measure("fma_peak.cc", _kernel_set_flags())


def lookup_ceiling() -> float:
    """Useful GFLOP/s of the operator's lookup tiles on one core with S in L1: one load per
    multiply-add caps them below the FMA peak."""
    return _measure("lookup_ceiling.cc", _kernel_set_flags())


def memory_bandwidth(threads: int) -> float:
    """Read bandwidth from memory with ``threads`` threads, GB/s."""
    return _measure("memory_bandwidth.cc", ["-fopenmp"], dict(os.environ, OMP_NUM_THREADS=str(threads)))


# core_sharing() above this: the two threads pass data the long way (most likely cores without a
# common last-level cache): 1.0-1.2 otherwise, 2.3-3.2 then, on the 2-core VMs of RESULTS.md's
# run 41.
SLOW_PASSING_RATIO = 1.6


def core_sharing() -> float:
    """Time for one thread to read 256 KB the other thread just wrote, over reading its own
    (``core_sharing.cc``, two threads)."""
    return _measure("core_sharing.cc", ["-fopenmp"])


def passed_apart(ratios: list) -> bool:
    """Whether any of these ``core_sharing()`` figures (taken around one measurement) says the
    threads passed data the long way."""
    return any(r > SLOW_PASSING_RATIO for r in ratios)
