"""Where one cell's call goes, stage by stage, at one thread and at several (``bench_inference.py
--stages MODEL``): the exported LCNN network in ``lcnn-predict``, built with stage clocks
(``make -C operators clocks``, ``operators/lookup_conv_clocks.h``).

A stage is an OpenMP region of the operator, named by the function that opens it
(``ChannelRanges``: the lookups; ``DictionaryProduct``, ``TransposedProduct``, ...), plus the
operators' whole calls and a layer call's prologue. Per stage and call: its wall time at one
thread; at several, its wall time, its busy time (the threads' time inside their shares, summed),
busy over the one-thread time (how much more thread-time the same work takes when split: data
one core reads after the other wrote it, caches shared) and idle time (team x wall - busy: the
threads that finished first, waiting at the region's end). Per-call figures are the difference
of two runs of ``repeat`` and ``2 x repeat`` calls over ``repeat``: the first call's planning and
the predictor's set-up drop out.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from typing import Dict, Tuple

from bench_inference import SHAPE, build, run_predictor

HERE = os.path.dirname(os.path.abspath(__file__))
OPERATORS = os.path.join(HERE, "..", "operators")
CLOCKS_BUILD = os.path.join(OPERATORS, "build-clocks")
CLOCK_LINE = re.compile(r"lcnn stage clock: (.+) regions=(\d+) team=(\d+) wall_us=([\d.]+) busy_us=([\d.]+) "
                        r"idle_us=(-?[\d.]+)")


def build_clocks() -> str:
    """The folder of the stage-clock build (made, or brought up to date, first)."""
    subprocess.run(["make", "-C", OPERATORS, "clocks", f"-j{os.cpu_count() or 2}", f"PYTHON={sys.executable}"],
                   check=True, capture_output=True)
    return CLOCKS_BUILD


def clocked_run(prefix: str, image: str, batch: int, threads: int, repeat: int, build: str = CLOCKS_BUILD
                ) -> Tuple[float, Dict[str, tuple]]:
    """One ``lcnn-predict`` run of the export at ``prefix`` on ``image`` (a .npy of one input,
    repeated to ``batch``) with ``repeat`` timed calls: its median ms per batch and, per stage,
    ``(regions, team, wall µs, busy µs, idle µs)`` summed over all its calls (warm-up included)."""
    ms, done = run_predictor(prefix, image, batch, threads, repeat, build)
    stages = {m[1]: (int(m[2]), int(m[3]), *map(float, m.groups()[3:])) for m in CLOCK_LINE.finditer(done.stderr)}
    if not stages:
        raise RuntimeError(f"{build}: lcnn-predict printed no stage clocks (not a clocks build?)")
    return ms, stages


def per_call(prefix: str, image: str, batch: int, threads: int, repeat: int, build: str = CLOCKS_BUILD
             ) -> Tuple[float, Dict[str, tuple]]:
    """Median ms per batch (of the longer run) and, per stage, ``(regions, team, wall µs, busy
    µs, idle µs)`` per call: runs of ``repeat`` and ``2 x repeat`` calls, differenced."""
    _, short = clocked_run(prefix, image, batch, threads, repeat, build)
    ms, long = clocked_run(prefix, image, batch, threads, 2 * repeat, build)
    stages = {}
    for name, (regions, team, *times) in long.items():
        r0, _, *t0 = short.get(name, (0, team, 0.0, 0.0, 0.0))
        stages[name] = ((regions - r0) / repeat, team, *((a - b) / repeat for a, b in zip(times, t0)))
    return ms, stages


def profile_stages(name: str, density: str, threads: int, batch: int, repeat: int) -> None:
    """Print the cell's stage table: one thread against ``threads``."""
    import numpy as np

    from lcnn_gluon import export, ops
    ops.load()
    build_clocks()
    _, lcnn, _ = build(name, density)
    counts = sorted({1, threads})
    with tempfile.TemporaryDirectory() as folder:
        prefix, image = os.path.join(folder, "lcnn"), os.path.join(folder, "input.npy")
        export.export(export.sparsify(lcnn, SHAPE), prefix, SHAPE, dict(library=ops.LIBRARY), reference=lcnn)
        np.save(image, np.random.RandomState(0).standard_normal(SHAPE).astype(np.float32))
        runs = {t: per_call(prefix, image, batch, t, repeat) for t in counts}
    many = counts[-1]
    print(f"{name}, density {density}, batch {batch}: lcnn-predict with stage clocks, {repeat} calls "
          f"(runs of {repeat} and {2 * repeat} differenced), µs a call\n")
    print(f"| stage | regions a call | 1 thread | {many} threads: wall | busy (thread-time) | "
          f"busy / 1 thread | idle |\n" + "| --- " * 7 + "|")
    one = runs[1][1]
    for stage in sorted(runs[many][1], key=lambda s: -runs[many][1][s][2]):
        regions, team, wall, busy, idle = runs[many][1][stage]
        if regions == 0 and one.get(stage, (0,))[0] == 0:
            continue  # a stage of the first call only (TransposeDictionary): the differencing drops it
        alone = one.get(stage, (0, 1, 0.0, 0.0, 0.0))[2]
        split = team > 1 and alone > 0  # (the operators' calls are clocked as one thread's)
        print(f"| {stage} | {regions:g} | {alone:.1f} | {wall:.1f} | {busy:.1f} | "
              + (f"{busy / alone:.2f} | {idle:.1f} |" if split else "- | - |"))
    if any(v[0] > 0 and v[2] < 0 for run in runs.values() for v in run[1].values()):
        print("\n(a stage's time a call came out negative: the machine was busier in the shorter run than in the "
              "longer; run again on a quieter machine)")
    print("\nwhole call (lcnn-predict's median): "
          + ", ".join(f"{t} thread{'s' if t > 1 else ''} {runs[t][0] * 1e3:.0f} µs" for t in counts))
