#!/usr/bin/env python3
"""Inference speed of exported LCNN networks (the C++ operator) against the same networks with
dense layers, on the grid users run: threads 1 and all cores, batch 1 and 16.

Models and densities of P (never calibrated to a goal):

* alexnet_lcnn_fast / _accurate: the per-layer densities a trained AlexNet-LCNN reaches
  (a TensorFlow re-implementation's table, docs/design.md), unscaled;
* resnet18_lcnn_fast / _accurate: one density for every lookup layer, 0.01, 0.03, 0.05.

Each cell is one process with ``OMP_NUM_THREADS`` threads and MXNet's NaiveEngine (all
parallelism inside the operators): the dense network (same architecture, plain
convolutions, oneDNN at the host's full instruction set) and the exported LCNN network
(``export.sparsify`` + ``export.export``), each timed in four forms (``lcnn_gluon.speed.forms``):
hybridized with static memory, plainly and after MXNet's oneDNN graph passes, and bound by
MXNet's symbolic executor (``export.Predictor``, the batch copied in each call), after those
passes and plainly; the fastest counts (column "forms":
the dense network's, then the LCNN network's), all the forms in turns
(``lcnn_gluon.speed.in_turns``). Counted
speedup: ``lcnn_gluon.flops`` for the whole network. The operator runs the kernel set its
library chose (column "kernels": AVX-512 where the CPU has it); ``LCNN_ISA=avx2`` in the
environment measures the AVX2 kernels on such a host. Around each thread count's cells the
machine's read bandwidth from memory is printed (``machine.py``): on a shared machine it
drifts with the neighbours' load, and the LCNN networks, bound by memory and caches far more
than the dense ones, drift with it. Around each cell of several threads the worker also measures
how fast its two threads pass data to each other (``machine.core_sharing``): on the 2-core VMs
measured here the two vCPUs now and then pass data the long way, and the column marks the cells
measured so ("apart").

    python benchmarks/bench_inference.py [--models alexnet_lcnn_fast,...] [--runs 20]
    python benchmarks/bench_inference.py --predictor ...   (also the C++ predictor, lcnn-predict,
        on each exported network: its own time per batch, MXNet's threaded engine)
    python benchmarks/bench_inference.py --layers alexnet_lcnn_fast --threads 2 --batch 16
        (one cell, per lookup layer: dense layer, operator, % of the FMA peak of the lookup
        stage, bytes the operator moves per output, weights and their time from memory; then
        both whole networks at 224x224 and at 32x32, the floor of a call; last the bound the
        kernels' ceilings put on the cell's measured/counted)
    python benchmarks/bench_inference.py --stages resnet18_lcnn_fast --density 0.05 --threads 2 --batch 1
        (one cell, stage by stage: each OpenMP region of the operator at one thread and at
        several, wall and thread-time, in lcnn-predict built with stage clocks; stage_profile.py)
    python benchmarks/bench_inference.py --scaling [--rounds 3]
        (the issue's thread goal: each model's batch-16 cells at one thread and at all cores,
        in alternating processes, round after round; throughput at all cores over one thread)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
import machine  # noqa: E402  (next to this file; imports nothing heavy)

PROFILE = {  # per-layer densities of a trained AlexNet-LCNN (conv1..conv5, fc6, fc7)
    "alexnet_lcnn_fast": [.083, .034, .008, .013, .027, .001, .002],
    "alexnet_lcnn_accurate": [.129, .040, .029, .034, .071, .006, .007],
}
RESNET_DENSITIES = (0.01, 0.03, 0.05)
GOAL = {"fast": 0.5, "accurate": 0.6}  # measured / counted
SHAPE = (3, 224, 224)
BATCHES = (1, 16)
SCALING_BATCH = 16
SCALING_GOAL = 1.7  # throughput at 2 threads over 1 thread, at batch 16


def cells(models):
    """(model, density label) of the grid."""
    for name in models:
        if name in PROFILE:
            yield name, "table"
        else:
            for d in RESNET_DENSITIES:
                yield name, f"{d:g}"


def build(name: str, density: str):
    """The dense network, the LCNN network with P at the cell's densities, its layer trace."""
    import mxnet as mx

    from lcnn_gluon import flops, get_model
    from lcnn_gluon import nn as lnn
    mx.random.seed(0)
    dense = get_model(name.split("_")[0], classes=1000)
    dense.initialize(mx.init.Xavier())
    lcnn = get_model(name, classes=1000)
    lcnn.initialize(mx.init.Xavier())
    layers = flops.trace(lcnn, SHAPE)
    lookups = lnn.lookup_layers(lcnn)
    profile = PROFILE[name] if density == "table" else [float(density)] * len(lookups)
    for i, (layer, d) in enumerate(zip(lookups, profile)):
        lnn.set_random_lookup(layer, d, seed=i)
    return dense, lcnn, layers


def run_predictor(prefix: str, image: str, batch: int, threads: int, runs: int, folder: str = ""
                  ) -> Tuple[float, subprocess.CompletedProcess]:
    """``lcnn-predict`` (and the library) from ``folder`` (default: the project's build) on the
    export at ``prefix``, its input the .npy ``image`` repeated to ``batch``, ``runs`` timed calls:
    its milliseconds per batch, and the finished process."""
    from lcnn_gluon import ops
    folder = folder or os.path.dirname(ops.path())
    done = subprocess.run([os.path.join(folder, ops.PREDICTOR), "--symbol", f"{prefix}-symbol.json", "--params",
                           f"{prefix}-0000.params", "--library", os.path.join(folder, ops.LIBRARY), "--input", image,
                           "--batch", str(batch), "--threads", str(threads), "--repeat", str(runs)],
                          capture_output=True, text=True, check=True)
    return float(re.search(r"threads: ([\d.]+) ms per batch", done.stdout).group(1)), done


def predictor_ms(prefix: str, x, threads: int, runs: int) -> float:
    """Milliseconds per batch of ``lcnn-predict`` on the exported ``prefix`` for the batch ``x``
    (its first image repeated, as the predictor's --batch feeds it)."""
    import numpy as np

    image = f"{prefix}-input.npy"
    np.save(image, x[0].asnumpy())
    return run_predictor(prefix, image, x.shape[0], threads, runs)[0]


def worker(args) -> None:
    """One process, one thread count: every (model, density) x batch cell; a JSON line each."""
    import mxnet as mx

    from lcnn_gluon import export, flops, ops
    from lcnn_gluon.speed import export_copy, in_turns
    ops.load()
    with tempfile.TemporaryDirectory() as folder:
        for name, density in cells(args.models.split(",")):
            dense, lcnn, layers = build(name, density)
            counted = flops.speedup(flops.count(layers))
            prefix = os.path.join(folder, f"{name}-{density}")
            export.export(export.sparsify(lcnn, SHAPE), prefix, SHAPE, dict(library=ops.LIBRARY), reference=lcnn)
            dense_prefix = export_copy(dense, mx.nd.zeros((1,) + SHAPE), folder)  # any batch: exported once
            for batch in map(int, args.batches.split(",")):
                x = mx.nd.random.normal(shape=(batch,) + SHAPE)
                sharing = [machine.core_sharing()] if args.threads > 1 else []
                timed = in_turns(dict(dense=dense_prefix, lcnn=prefix), x, args.runs)
                sharing += [machine.core_sharing()] if args.threads > 1 else []
                (dense_ms, dense_how), (lcnn_ms, lcnn_how) = timed["dense"], timed["lcnn"]
                cell = dict(model=name, density=density, threads=args.threads, batch=batch,
                            kernels=ops.kernel_isa(), dense_ms=dense_ms, dense_how=dense_how, lcnn_ms=lcnn_ms,
                            lcnn_how=lcnn_how, counted=counted, sharing=sharing)
                if args.predictor:
                    cell["predictor_ms"] = predictor_ms(prefix, x, args.threads, args.runs)
                print(json.dumps(cell), flush=True)


def run_cells(models: str, threads: int, runs: int, predictor: bool, batches: tuple = BATCHES) -> list:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_ENGINE_TYPE="NaiveEngine")
    proc = subprocess.run([sys.executable, __file__, "--worker", "--models", models, "--threads", str(threads),
                           "--runs", str(runs), "--batches", ",".join(map(str, batches))]
                          + (["--predictor"] if predictor else []),
                          env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def report(results: list) -> None:
    predictor = "predictor_ms" in results[0]
    print("\n| model | density | threads | batch | kernels | dense ms | LCNN ms | measured | counted | "
          "measured/counted | goal | forms | threads' data passing |" + (" lcnn-predict ms |" if predictor else "")
          + "\n" + "| --- " * (14 if predictor else 13) + "|")
    apart = 0
    for r in results:
        measured = r["dense_ms"] / r["lcnn_ms"]
        ratio = measured / r["counted"]
        goal = GOAL[r["model"].rsplit("_", 1)[-1]]
        passing = ", ".join(f"{x:.1f}" for x in r["sharing"]) or "-"
        if machine.passed_apart(r["sharing"]):
            passing, apart = passing + " (apart)", apart + 1
        print(f"| {r['model']} | {r['density']} | {r['threads']} | {r['batch']} | {r['kernels']} | {r['dense_ms']:.2f} | "
              f"{r['lcnn_ms']:.2f} | {measured:.1f}x | {r['counted']:.1f}x | **{ratio:.2f}** | "
              f"{'met' if ratio >= goal else f'NOT met ({goal})'} | {r['dense_how']}, {r['lcnn_how']} | {passing} |"
              + (f" {r['predictor_ms']:.2f} |" if predictor else ""))
    print("\nthreads' data passing (cells of several threads): machine.core_sharing() before and after the cell, "
          "one thread reading what the other just wrote over reading its own; 'apart' above "
          f"{machine.SLOW_PASSING_RATIO}: the threads passed data the long way for some of the cell "
          f"({apart} cells), which slows a network split between threads, the LCNN network most")


def scaling(models: str, cores: int, runs: int, rounds: int) -> None:
    """Throughput at ``cores`` threads over one thread at batch SCALING_BATCH, per cell: each
    model's cells in one process per thread count, the two counts alternating, ``rounds``
    times (the shared machine's speed drifts by more than the goal's margin within minutes)."""
    if cores < 2:
        raise SystemExit("--scaling needs at least 2 cores (this process may use 1)")
    times = {}  # (model, density, network) -> {threads: [ms per round]}
    apart = {}  # (model, density) -> [whether the threads passed data the long way, per round]
    for r in range(rounds):
        for name in models.split(","):
            for threads in (1, cores):
                for cell in run_cells(name, threads, runs, False, (SCALING_BATCH,)):
                    for net in ("lcnn", "dense"):
                        key = (cell["model"], cell["density"], net)
                        times.setdefault(key, {}).setdefault(threads, []).append(cell[f"{net}_ms"])
                    if threads > 1:
                        apart.setdefault((cell["model"], cell["density"]), []).append(
                            machine.passed_apart(cell["sharing"]))
        print(f"round {r + 1} of {rounds} done", file=sys.stderr, flush=True)
    print(f"\n| model | density | network | 1 thread ms | {cores} threads ms | speedup per round | "
          f"speedup of medians | goal ({SCALING_GOAL}x) |\n" + "| --- " * 8 + "|")
    for (name, density, net), by_threads in times.items():
        one, all_ = by_threads[1], by_threads[cores]
        per_round = [f"{a / b:.2f}" + (" (apart)" if slow else "")
                     for a, b, slow in zip(one, all_, apart[(name, density)])]
        ratio = statistics.median(one) / statistics.median(all_)
        verdict = "-" if net == "dense" else ("met" if ratio >= SCALING_GOAL else "NOT met")
        print(f"| {name} | {density} | {net} | {statistics.median(one):.1f} | {statistics.median(all_):.1f} | "
              f"{', '.join(per_round)} | **{ratio:.2f}x** | {verdict} |")
    print(f"\n(apart): that round's {cores}-thread cell was measured at least partly while the threads passed data "
          f"the long way (machine.core_sharing() above {machine.SLOW_PASSING_RATIO})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="alexnet_lcnn_fast,alexnet_lcnn_accurate,"
                                            "resnet18_lcnn_fast,resnet18_lcnn_accurate")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per measurement (median)")
    parser.add_argument("--threads", type=int, default=0, help="only this thread count (default: 1 and all)")
    parser.add_argument("--layers", help="per-layer profile of this model's cell instead (see --density)")
    parser.add_argument("--stages", help="stage profile of this model's cell instead (see --density)")
    parser.add_argument("--density", default="table", help="with --layers, --stages: 'table' or a density")
    parser.add_argument("--batch", type=int, default=16, help="with --layers, --stages")
    parser.add_argument("--predictor", action="store_true", help="also time lcnn-predict on each export")
    parser.add_argument("--scaling", action="store_true", help="thread scaling at batch 16 instead (see --rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="with --scaling: alternations of the thread counts")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.layers:
        from layer_profile import profile_cell
        return profile_cell(args.layers, args.density, args.threads or os.cpu_count(), args.batch, args.runs)
    if args.stages:
        from stage_profile import profile_stages
        return profile_stages(args.stages, args.density, args.threads or os.cpu_count(), args.batch,
                              10 * args.runs)

    from lcnn_gluon.speed import TURNS
    cores = len(os.sched_getaffinity(0))
    if args.scaling:
        return scaling(args.models, cores, args.runs, args.rounds)
    print(f"machine: {cores} cores; NaiveEngine; {SHAPE[1]}x{SHAPE[2]} input; median of {args.runs} runs "
          f"in {TURNS} turns; the fastest of plain, oneDNN graph, executor and plain executor for each network")
    results = []
    for threads in ([args.threads] if args.threads else sorted({1, cores})):
        before = machine.memory_bandwidth(threads)  # the machine's state around the cells
        results += run_cells(args.models, threads, args.runs, args.predictor)
        print(f"{threads} threads: memory read bandwidth {before:.1f} GB/s before the cells, "
              f"{machine.memory_bandwidth(threads):.1f} GB/s after")
    report(results)


if __name__ == "__main__":
    main()
