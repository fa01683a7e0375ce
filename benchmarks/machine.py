"""The machine's limits, measured when asked (a shared machine's figures drift within minutes):
one core's FMA peak (``fma_peak.cc``), the lookup stage's ceiling on one core
(``lookup_ceiling.cc``: the operator's tile kernel with S in L1) and the read bandwidth from
memory (``memory_bandwidth.cc``), each a small C++ program next to this file, compiled here for
AVX2 and run once."""
from __future__ import annotations

import os
import subprocess
import tempfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
OPERATORS = os.path.join(HERE, "..", "operators")  # the kernels lookup_ceiling.cc runs


def _measure(source: str, flags: list, env: Optional[dict] = None) -> float:
    """The first number the program ``source`` prints, compiled with ``flags``, run in ``env``
    (this process's environment if None)."""
    with tempfile.TemporaryDirectory() as folder:
        exe = os.path.join(folder, "measure")
        subprocess.run([os.environ.get("CXX", "g++"), "-std=c++17", "-O2", "-mavx2", "-mfma", *flags, "-o", exe,
                        os.path.join(HERE, source)], check=True)
        return float(subprocess.run([exe], capture_output=True, text=True, check=True, env=env).stdout.split()[0])


def fma_peak() -> float:
    """One core's single-precision FMA peak, GFLOP/s."""
    return _measure("fma_peak.cc", [])


def lookup_ceiling() -> float:
    """Useful GFLOP/s of the operator's lookup tiles on one core with S in L1: one load per
    multiply-add caps them below the FMA peak."""
    return _measure("lookup_ceiling.cc", ["-I", OPERATORS])


def memory_bandwidth(threads: int) -> float:
    """Read bandwidth from memory with ``threads`` threads, GB/s."""
    return _measure("memory_bandwidth.cc", ["-fopenmp"], dict(os.environ, OMP_NUM_THREADS=str(threads)))
