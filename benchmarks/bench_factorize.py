#!/usr/bin/env python3
"""Time and memory of starting AlexNet's fc6 (4096 x 9216 = 4096 x 256 x 6 x 6) from a dense
weight: ``lcnn_gluon.lookup.factorize`` at the fast and accurate dictionary sizes (512, 1024),
at the training default density and at the sweep's (1.0). Goal: under a minute on 2 cores,
holding at most a few copies of W.

Each case runs in a fresh process: the peak resident memory it adds over W (read from
``getrusage``) is divided by W's size.

    python benchmarks/bench_factorize.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

FC6 = (4096, 256, 6, 6)
DICTIONARY_SIZES = {"fast": 512, "accurate": 1024}  # the AlexNet presets' fc6
GOAL_SECONDS = 60


def case(k: int, density: float) -> None:
    import resource
    import time

    import numpy as np

    from lcnn_gluon.lookup.factorize import factorize
    rng = np.random.RandomState(0)
    # a trained layer's weight is far from white noise: a decaying spectrum over input channels;
    # made a block at a time so that no temporary inflates the peak measured before
    w = np.empty(FC6, np.float32)
    decay = (1.0 / np.arange(1, FC6[1] + 1, dtype=np.float32) ** 0.5)[:, None, None]
    for i in range(0, FC6[0], 64):
        w[i:i + 64] = rng.standard_normal((64,) + FC6[1:]).astype(np.float32) * decay
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    f = factorize(w, k, eps=0.01 / np.sqrt(36 * k), density=density)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(dict(k=k, density=density, seconds=seconds, w_gb=w.nbytes / 1e9,
                          extra_copies=(peak - before) / w.nbytes, p_copies=f.lookup.nbytes / w.nbytes,
                          error=f.relative_error,
                          kept=f.density)))


def main() -> None:
    if len(sys.argv) == 3:
        return case(int(sys.argv[1]), float(sys.argv[2]))
    from lcnn_gluon.conversion import DEFAULT_DENSITY
    from lcnn_gluon.sweep import SWEEP_INIT_DENSITY
    print(f"fc6 {FC6}, {os.cpu_count()} cores\n\n| preset | k | density asked | seconds | memory beyond W "
          "(copies of W) | of which P | relative error | density | goal |\n" + "| --- " * 9 + "|")
    for preset, k in DICTIONARY_SIZES.items():
        for density in (DEFAULT_DENSITY, SWEEP_INIT_DENSITY):
            out = subprocess.run([sys.executable, __file__, str(k), str(density)], capture_output=True,
                                 text=True, check=True).stdout
            r = json.loads(out.splitlines()[-1])
            print(f"| {preset} | {k} | {density:g} | {r['seconds']:.1f} | {r['extra_copies']:.1f} | {r['p_copies']:.0f} | "
                  f"{r['error']:.3f} | {r['kept']:.3f} | {'met' if r['seconds'] < GOAL_SECONDS else 'NOT met'} |")


if __name__ == "__main__":
    main()
