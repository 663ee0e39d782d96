"""Data-parallel scaling: samples/s and the communication share of a training step.

Run with K ranks (K = 1 is the single-process baseline):

    mpiexec -n K python benchmarks/scaling.py [--hidden 256,256] [--batch 128] [--steps 300]

Each step is timed in four parts on every rank: compute (forward and backward on the rank's
rows), wait (a barrier: the time a rank waits for the slowest one), all-reduce
(:func:`gpubp.distributed.allreduce_gradients`: the scaling by n_r, the one all-reduce of the
flat buffer and the division by N) and the optimizer update. The communication share is
all-reduce / step time, and (wait + all-reduce) / step time. Two workloads:

* weak scaling: every rank keeps ``--batch`` rows per step, so a step of K ranks covers K
  times the samples;
* strong scaling: the step's ``--batch`` rows are split over the K ranks.

Rank 0 prints one markdown table row per workload. Numbers are reported, never asserted.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Dict, List

import numpy as np

import gpubp
from gpubp import bench, distributed


def run(comm: distributed.Communicator, sizes: List[int], rows: int, steps: int, warmup: int, dtype: str,
        split_wait: bool = True) -> Dict[str, float]:
    """Time ``steps`` training steps with ``rows`` rows on this rank; the slowest rank's totals."""
    rng = np.random.default_rng(comm.rank)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=rows)
    net = gpubp.MLP(sizes, activation="relu", loss="cross_entropy", dtype=dtype, seed=0)
    opt = gpubp.SGD(0.01, momentum=0.9)
    be = net.backend
    Xb, Yb = be.asarray(X), be.asarray(y)
    distributed.broadcast_parameters(net, comm, opt)
    t = {"compute": 0.0, "wait": 0.0, "comm": 0.0, "update": 0.0}
    comm.barrier()
    for step in range(warmup + steps):
        if step == warmup:
            comm.barrier()
            t = {k: 0.0 for k in t}
            start = time.perf_counter()
        t0 = time.perf_counter()
        C = net.backprop(Xb, Yb)
        be.synchronize()
        tw = time.perf_counter()
        if split_wait:
            comm.barrier()  # separates waiting for a slower rank from the reduction itself
        t1 = time.perf_counter()
        distributed.allreduce_gradients(net, C, rows, comm)
        be.synchronize()
        t2 = time.perf_counter()
        opt.step(net)
        be.synchronize()
        t3 = time.perf_counter()
        t["compute"] += tw - t0
        t["wait"] += t1 - tw
        t["comm"] += t2 - t1
        t["update"] += t3 - t2
    wall = time.perf_counter() - start
    global_rows = comm.sum(rows)
    walls = comm.allgather(wall)
    shares = comm.allgather(t["comm"] / wall)
    shares_wait = comm.allgather((t["comm"] + t["wait"]) / wall)
    return {
        "rows": global_rows,
        "samples_per_s": steps * global_rows / max(walls),
        "step_ms": 1e3 * max(walls) / steps,
        "compute_ms": 1e3 * t["compute"] / steps,
        "wait_ms": 1e3 * t["wait"] / steps,
        "comm_ms": 1e3 * t["comm"] / steps,
        "update_ms": 1e3 * t["update"] / steps,
        "comm_share": float(np.mean(shares)),
        "comm_wait_share": float(np.mean(shares_wait)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hidden", default="256,256", help="hidden widths (default 256,256; MNIST-sized input 784, 10 outputs)")
    parser.add_argument("--batch", type=int, default=128, help="rows per rank (weak) / per step (strong); default 128")
    parser.add_argument("--steps", type=int, default=300, help="timed steps (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--no-barrier", action="store_true",
                        help="no barrier before the all-reduce: the wait is counted in the all-reduce, as in fit")
    args = parser.parse_args()
    comm = distributed.init()
    sizes = [784, *[int(h) for h in args.hidden.split(",")], 10]
    n_params = gpubp.MLP(sizes, dtype=args.dtype, seed=0).n_params
    if comm.rank == 0:
        threads = os.environ.get("OMP_NUM_THREADS", "unset")
        print(f"# {comm.size} rank(s) | {bench.cpu_model()}, {os.cpu_count()} logical CPUs | OMP_NUM_THREADS={threads} | "
              f"backend {gpubp.get_backend().name} | MLP {sizes} ({n_params} parameters, {args.dtype}) | "
              f"{args.steps} timed steps{', no barrier' if args.no_barrier else ''}")
        print("| workload | ranks | rows/step | samples/s | step ms | compute ms | wait ms | all-reduce ms | update ms "
              "| comm share | with wait |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    strong = comm.shard(args.batch)
    workloads = [("weak", args.batch), ("strong", strong.stop - strong.start)]
    for name, rows in workloads:
        r = run(comm, sizes, rows, args.steps, args.warmup, args.dtype, split_wait=not args.no_barrier)
        if comm.rank == 0:
            print(f"| {name} | {comm.size} | {r['rows']} "
                  f"| {r['samples_per_s']:.0f} | {r['step_ms']:.2f} | {r['compute_ms']:.2f} | {r['wait_ms']:.3f} | {r['comm_ms']:.3f} "
                  f"| {r['update_ms']:.2f} | {100 * r['comm_share']:.1f}% | {100 * r['comm_wait_share']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
