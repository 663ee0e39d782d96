"""The ``gpubp`` console command: ``gpubp train``, ``gpubp explain``, ``gpubp bench`` and ``gpubp info``.

Errors in what the user asked for (bad arguments or data, a missing or broken file, a
diverged run, an exhausted GPU) are printed as one line, without a traceback, and the command
exits with status 2 (130 when interrupted).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from typing import List, Optional, Sequence

import numpy as np

from .activations import ACTIVATIONS, ELEMENTWISE
from .errors import GpubpError
from .losses import LOSSES
from .optim import OPTIMIZERS
from .recipe import DEFAULT_LR, SCHEDULES, TrainConfig
from .backend import BACKEND_NAMES
from .validation import DTYPES


def _hidden_sizes(text: str) -> List[int]:
    if text.strip() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths such as 128,64; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer widths must be >= 1; got {text!r}")
    return sizes


def _check_save_path(path: str) -> None:
    """Refuse a --save path that a checkpoint cannot be written to, before any training."""
    from .checkpoint import check_save_path

    try:
        check_save_path(path)
    except (OSError, ValueError) as exc:
        raise type(exc)(f"--save: {exc}") from None


def _config(args: argparse.Namespace) -> TrainConfig:
    """The recipe the ``train`` options describe."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


def cmd_train(args: argparse.Namespace) -> int:
    from . import backend as backend_mod
    from . import validation

    # checked before anything is loaded or trained, so a typo costs no training time
    validation.check_int(args.epochs, "--epochs", 0)
    validation.check_int(args.batch_size, "--batch-size", 1)
    validation.check_int(args.split_seed, "--split-seed", 0)
    if not 0.0 <= args.momentum < 1.0:  # NaN fails this too
        raise ValueError(f"--momentum must lie in [0, 1); got {args.momentum}")
    validation.check_positive_float(args.lr, "--lr")
    if args.weight_decay is not None:
        validation.check_positive_float(args.weight_decay, "--weight-decay", allow_zero=True)
    if args.clip_norm is not None:
        validation.check_positive_float(args.clip_norm, "--clip-norm")
    if not 0.0 <= args.validation_split < 1.0:
        raise ValueError(f"--validation-split must lie in [0, 1) (the share of training rows held out); got "
                         f"{args.validation_split}")
    if args.early_stopping is not None:
        validation.check_int(args.early_stopping, "--early-stopping", 0)
    if args.plot:
        _check_png("--plot", args.plot)
    if not 0.0 <= args.dropout < 1.0:
        raise ValueError(f"--dropout must lie in [0, 1) (the probability of dropping a value); got {args.dropout}")
    comm = None
    if args.distributed:  # before the backend is made: under MPI each rank picks its own GPU
        from . import distributed

        comm = distributed.init()
    if args.save is not None and (comm is None or comm.rank == 0):  # the rank that will save
        _check_save_path(args.save)
    say = print if comm is None or comm.rank == 0 else (lambda *a, **k: None)
    be = backend_mod.set_backend(args.backend) if args.backend else backend_mod.get_backend()
    config = _config(args)
    data = config.load()
    net = config.make_network(data)
    fit_arguments = config.fit_arguments()
    optimizer, schedule, callbacks = fit_arguments["optimizer"], fit_arguments["lr_schedule"], fit_arguments["callbacks"]
    X_tr, Y_tr, X_te, Y_te, description = data.X_train, data.Y_train, data.X_test, data.Y_test, data.description
    if comm is not None:  # each rank trains on (and holds out validation rows of) its own contiguous shard
        tr = comm.shard(len(X_tr))
        X_tr, Y_tr = X_tr[tr], Y_tr[tr]

    say(f"gpubp {_version()} | backend {be.name} ({be.device}) | {description}")
    if comm is not None:
        say(f"distributed: {comm.size} rank{'s' if comm.size != 1 else ''}, {len(X_tr)} training rows on rank 0, "
            f"batch size {args.batch_size} per rank ({args.batch_size * comm.size} per step)")
    say(f"model {net!r}\noptimizer {optimizer!r}, batch size {args.batch_size}, {args.epochs} epochs")
    extras = [f"{args.validation_split:g} of the training rows held out for validation" if args.validation_split
              else "no validation rows"]
    extras += [f"schedule {schedule!r}"] if schedule is not None else []
    extras += [f"early stopping after {args.early_stopping} epochs without a better validation loss"] \
        if args.early_stopping is not None else []
    extras += [f"gradients clipped to a norm of {args.clip_norm:g}"] if args.clip_norm is not None else []
    say("; ".join(extras))

    start = time.perf_counter()
    history = net.fit(X_tr, Y_tr, **fit_arguments, verbose=2 if args.no_progress else 1, comm=comm)
    elapsed = time.perf_counter() - start
    if comm is None or comm.rank == 0:  # the replicas are identical: rank 0 evaluates and saves
        for cb in callbacks:
            if getattr(cb, "stopped_epoch", 0):
                print(f"early stopping at epoch {cb.stopped_epoch}: the weights of epoch {cb.best_epoch} "
                      f"(validation loss {cb.best:.4f}) are restored")
        loss, acc = net.evaluate(X_te, Y_te)
        acc_text = f", test accuracy {acc:.4f}" if acc is not None else ""
        print(f"done in {elapsed:.1f} s: test loss {loss:.4f}{acc_text}")
        if args.save is not None:
            net.save(args.save, optimizer=optimizer)
            print(f"saved to {args.save}")
        if args.plot:
            history.plot(path=args.plot)
            print(f"learning curves in {args.plot}")
    return 0


def _check_png(option: str, path: str) -> None:
    """Before anything is trained: matplotlib installed (the extra named otherwise) and the
    folder of the picture ``path`` there."""
    from .plot import _matplotlib

    _matplotlib()
    if os.path.isdir(path):
        raise ValueError(f"{option} {path!r} is a folder; name the picture file, e.g. {os.path.join(path, 'net.png')!r}")
    if not os.path.splitext(path)[1]:  # matplotlib would write path + ".png", not the file named
        raise ValueError(f"{option} {path!r} has no extension; name the picture file with its format, e.g. {path + '.png'!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{option} {path!r}: folder {folder!r} does not exist")


def cmd_explain(args: argparse.Namespace) -> int:
    """The chain rule of one parameter on the first ``--samples`` held-out rows, of a saved network
    or of the ``gpubp train`` recipe's network trained first."""
    from . import backend as backend_mod
    from . import validation
    from .explain import resolve
    from .persistence import load

    validation.check_int(args.samples, "--samples", 1)
    validation.check_int(args.epochs, "--epochs", 0)
    if args.png:
        _check_png("--png", args.png)
    be = backend_mod.set_backend(args.backend) if args.backend else backend_mod.get_backend()
    if args.load:
        net = load(args.load)
        config = TrainConfig(data_dir=args.data_dir, loss=net.loss.name)
        data = config.load()
        if data.X_test.shape[1] != net.sizes[0]:
            raise ValueError(f"--load {args.load!r}: the network takes {net.sizes[0]} inputs, the data ({data.description}) "
                             f"has {data.X_test.shape[1]}; give the data it was trained on with --data-dir")
        resolve(net, args.weight, None, None, None)
        print(f"gpubp {_version()} | backend {be.name} | {net!r} from {args.load}")
    else:
        config = TrainConfig(data_dir=args.data_dir, epochs=args.epochs, seed=args.seed)
        data = config.load()
        net = config.make_network(data)
        resolve(net, args.weight, None, None, None)  # a wrong name costs no training time
        print(f"gpubp {_version()} | backend {be.name} | {data.description}\nmodel {net!r}: "
              f"training {args.epochs} epochs first (gpubp train's recipe)", flush=True)
        net.fit(data.X_train, data.Y_train, **config.fit_arguments(), verbose=0)  # as gpubp train fits
    X, Y = data.X_test[: args.samples], data.Y_test[: args.samples]
    expl = net.explain(X, Y, args.weight, training=not args.inference)
    print(f"the first {len(X)} held-out samples:\n")
    print(expl.format(samples=args.samples, style=args.format))
    if args.png:
        from . import plot

        if args.show == "gradients":  # the gradients of the explained batch
            plot.network(net, X, Y, show="gradients", path=args.png, training=not args.inference)
        else:
            plot.network(net, show="weights", path=args.png)
        print(f"wrote {args.png}")
    return 0


def _version() -> str:
    from . import __version__

    return __version__


def cmd_info(args: argparse.Namespace) -> int:
    from . import _optional
    from . import backend as backend_mod

    print(f"gpubp {_version()}")
    print(f"python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    print(f"numpy {np.__version__}")
    from .ops import _blas

    print(f"GPUBP_BLAS={_blas.SELECTED}: the numpy backend's products go to {_blas.describe(path=True)}")
    cp = _optional.cupy
    print(f"cupy {cp.__version__ if cp is not None else 'not installed'}")
    problem = backend_mod.cupy_problem()
    print(f"cupy backend: {'available' if problem is None else 'unavailable: ' + problem}")
    print(f"{backend_mod.ENV_VAR}={os.environ.get(backend_mod.ENV_VAR) or 'auto (unset)'}")
    be = backend_mod.get_backend()
    print(f"active backend: {be.name} on {be.device}")
    if be.name == "cupy":
        rt = cp.cuda.runtime
        print(f"CUDA runtime {rt.runtimeGetVersion()}, driver {rt.driverGetVersion()}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench, validation

    if args.sklearn:
        return _bench_sklearn(args)
    if args.from_json:
        results, info = bench.read_results(args.from_json)
    else:
        backends = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = [b for b in backends if b not in bench.BACKENDS]
        if unknown:
            raise ValueError(f"--backends: unknown {', '.join(unknown)}; expected names from {', '.join(bench.BACKENDS)}")
        if args.png:
            bench.plot_available()
        # the handle keeps the BLAS limit until the cases have run
        limit = bench.set_threads(validation.check_int(args.threads, "--threads", 1)) if args.threads is not None else None
        info = bench.machine_info()
        print(bench.format_machine(info), flush=True)
        start = time.perf_counter()
        results, skipped = bench.run_cases(bench.core_cases(backends), min_time=args.min_time,
                                           log=None if args.quiet else lambda line: print(line, flush=True))
        for reason in skipped:
            print(f"skipped: {reason}")
        print(f"measured {len(results)} cases in {time.perf_counter() - start:.0f} s\n")
        del limit
    print(bench.format_table(results))
    if not args.from_json and "cupy" in backends:
        from .bench import launch_overhead

        print("host side of a CuPy step (measured on the stand-in device: launches checked, counted and skipped)")
        for opt in ("sgd", "adam"):
            print("  " + launch_overhead.format_result(launch_overhead.measure(optimizer=opt)), flush=True)
        print()
    if args.json:
        bench.write_json(args.json, results, info)
        print(f"wrote {args.json}")
    if args.png:
        bench.plot(args.png, results)
        print(f"wrote {args.png}")
    return 0


def _bench_sklearn(args: argparse.Namespace) -> int:
    """``gpubp bench --sklearn``: gpubp.sklearn against scikit-learn's MLP (gpubp.bench.sklearn)."""
    from . import bench, validation

    if args.png or args.from_json:
        raise ValueError("--png and --from-json time the core benchmarks; --sklearn writes its results with --json")
    try:
        from .bench import sklearn as comparison
    except ImportError as exc:
        raise bench.MissingExtraError(str(exc)) from None
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    known = list(dict.fromkeys(comparison.CV_DATASETS + comparison.FIT_DATASETS))
    unknown = [d for d in names if d not in known]
    if unknown:
        raise ValueError(f"--datasets: unknown {', '.join(unknown)}; expected names from {', '.join(known)}")
    max_iter = validation.check_int(args.max_iter, "--max-iter", 1)
    repeats = validation.check_int(args.repeats, "--repeats", 1)
    fit_sets = [d for d in comparison.FIT_DATASETS if d in names]
    if "mnist" in fit_sets and args.data_dir is None:
        print("skipped: mnist (give --data-dir, the folder of the MNIST t10k IDX files)")
        fit_sets.remove("mnist")
    threads = validation.check_int(args.threads, "--threads", 1) if args.threads is not None else None
    limit = bench.set_threads(threads) if threads is not None else None
    info = bench.machine_info()
    del limit
    print(bench.format_machine(info), flush=True)
    print("each implementation's fits run in a fresh process", flush=True)
    cv, fits = comparison.run([d for d in comparison.CV_DATASETS if d in names], fit_sets, mnist_dir=args.data_dir,
                              repeats=repeats, max_iter=max_iter, threads=threads,
                              log=None if args.quiet else lambda line: print(line, flush=True))
    if cv:
        print(f"\n5-fold cross-validation, mean score (max_iter={max_iter}):\n{comparison.format_cv(cv)}")
    if fits:
        print(f"\nfit time (best of {repeats}) and held-out accuracy (max_iter={max_iter}):\n{comparison.format_fits(fits)}")
    if args.json:
        comparison.write_json(args.json, cv, fits, info)
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpubp", description="Vectorized backpropagation on NumPy or CuPy.")
    parser.add_argument("--version", action="version", version=f"gpubp {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train an MLP (default: the bundled UCI digits, offline)")
    d = TrainConfig()  # the recipe's defaults are the command's
    t.add_argument("--data-dir", default=d.data_dir, help="folder with MNIST IDX files (train-*/t10k-*, plain or .gz)")
    t.add_argument("--hidden", type=_hidden_sizes, default=list(d.hidden),
                   help=f"hidden layer widths, e.g. {','.join(map(str, d.hidden))} (default)")
    t.add_argument("--activation", default=d.activation, choices=ELEMENTWISE, help=f"hidden activation (default {d.activation})")
    t.add_argument("--output-activation", default=d.output_activation, choices=list(ACTIVATIONS), help="default: the loss's own")
    t.add_argument("--loss", default=d.loss, choices=list(LOSSES), help=f"default {d.loss}")
    t.add_argument("--optimizer", default=d.optimizer, choices=list(OPTIMIZERS), help=f"default {d.optimizer}")
    t.add_argument("--lr", type=float, default=d.lr, help="learning rate (default " + ", ".join(
        f"{lr:g} for {name}" for name, lr in DEFAULT_LR.items()) + ")")
    t.add_argument("--momentum", type=float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    t.add_argument("--nesterov", action="store_true", help="SGD with Nesterov momentum")
    t.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    t.add_argument("--dropout", type=float, default=d.dropout, metavar="P",
                   help="a Dropout layer (drop probability P) after each hidden activation (default 0: none)")
    t.add_argument("--batch-norm", action="store_true",
                   help="a BatchNorm layer after each hidden layer's linear part (before its activation)")
    t.add_argument("--dtype", default=d.dtype, choices=list(DTYPES))
    t.add_argument("--backend", default=None, choices=list(BACKEND_NAMES), help="overrides GPUBP_BACKEND")
    t.add_argument("--seed", type=int, default=d.seed, help=f"initialisation and shuffling seed (default {d.seed})")
    t.add_argument("--split-seed", type=int, default=d.split_seed, help=f"seed of the train/test split (default {d.split_seed})")
    t.add_argument("--test-fraction", type=float, default=d.test_fraction,
                   help=f"held-out share when splitting (default {d.test_fraction})")
    t.add_argument("--weight-decay", type=float, default=d.weight_decay, metavar="WD",
                   help="weight decay (L2 for sgd and adam, decoupled for adamw; default: the optimizer's own)")
    t.add_argument("--clip-norm", type=float, default=d.clip_norm, metavar="MAX",
                   help="clip the gradients' global L2 norm to MAX before each update (default: no clipping)")
    t.add_argument("--validation-split", type=float, default=d.validation_split, metavar="F",
                   help=f"share of the training rows held out for validation (default {d.validation_split}); the "
                        f"test rows are evaluated once, at the end")
    t.add_argument("--early-stopping", type=int, default=d.early_stopping, metavar="PATIENCE",
                   help="stop after PATIENCE epochs without a better validation loss and keep the best epoch's weights")
    t.add_argument("--lr-schedule", default=d.lr_schedule, choices=list(SCHEDULES),
                   help="step: lr x 0.1 after each third of the epochs; cosine: annealed to 0 over the epochs; "
                        "plateau: lr x 0.1 after 5 epochs without a better validation loss (default: constant lr)")
    t.add_argument("--plot", default=None, metavar="PNG", help="draw the learning curves into this image (needs "
                   "matplotlib: gpubp[plot])")
    t.add_argument("--save", default=None, help="write a checkpoint here after training")
    t.add_argument("--no-progress", action="store_true", help="no progress bar (the line per epoch stays)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel under mpiexec -n K: each rank trains on its shard, rank 0 prints and saves")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("explain", help="the chain rule of one weight, sample by sample (trains the default network "
                                       "first unless --load)")
    e.add_argument("--load", default=None, help="a network saved by gpubp train --save (default: train one first)")
    e.add_argument("--weight", default="w_12^(L)",
                   help="the parameter in the tutorial's notation: w_jk^(l) or b_j^(l), nodes from 1, l a number or "
                        "L, L-1, ... (default w_12^(L))")
    e.add_argument("--samples", type=int, default=5, help="held-out rows explained (default 5)")
    e.add_argument("--format", default="text", choices=["text", "markdown", "latex"], help="default text")
    e.add_argument("--inference", action="store_true", help="an inference pass (no dropout, running statistics)")
    e.add_argument("--png", default=None, help="also draw the network into this PNG (needs matplotlib: gpubp[plot])")
    e.add_argument("--show", default="gradients", choices=["gradients", "weights"],
                   help="what the picture's edges show (default: the gradients of these samples)")
    e.add_argument("--data-dir", default=d.data_dir, help="MNIST IDX files, as for gpubp train (default: the digits)")
    e.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs of training without --load (default {d.epochs})")
    e.add_argument("--seed", type=int, default=d.seed, help=f"initialisation and shuffling seed (default {d.seed})")
    e.add_argument("--backend", default=None, choices=list(BACKEND_NAMES), help="overrides GPUBP_BACKEND")
    e.set_defaults(func=cmd_explain)

    b = sub.add_parser("bench", help="time the hot path and a training step on NumPy, CuPy and PyTorch (about a minute)")
    b.add_argument("--backends", default="loop,numpy,gemm,cupy,torch",
                   help="comma-separated: loop (per-sample), numpy, gemm (the BLAS bound), cupy, torch (default: all; "
                        "missing ones are skipped)")
    b.add_argument("--threads", type=int, default=None, help="threads for NumPy's BLAS and PyTorch (default: as configured)")
    b.add_argument("--min-time", type=float, default=0.2, help="seconds of calls per case (default 0.2)")
    b.add_argument("--json", default=None, help="write the results (and the machine) here as JSON")
    b.add_argument("--png", default=None, help="draw the results into this PNG (needs matplotlib: gpubp[plot])")
    b.add_argument("--from-json", default=None,
                   help="print (and plot) a saved file instead of measuring: `gpubp bench --json` or pytest --benchmark-json")
    b.add_argument("--quiet", action="store_true", help="no line per case while measuring")
    b.add_argument("--sklearn", action="store_true",
                   help="compare gpubp.sklearn's estimators with scikit-learn's MLP instead: 5-fold scores on its bundled "
                        "data sets and fit times (minutes; needs gpubp[sklearn])")
    b.add_argument("--datasets", default="digits,iris,wine,breast_cancer,diabetes,mnist,classification_100k",
                   help="--sklearn: comma-separated data sets (default: all)")
    b.add_argument("--data-dir", default=None, help="--sklearn: folder with the MNIST t10k IDX files (mnist is skipped without)")
    b.add_argument("--max-iter", type=int, default=200, help="--sklearn: max_iter of both estimators (default 200)")
    b.add_argument("--repeats", type=int, default=1, help="--sklearn: fits per timing, the best counts (default 1)")
    b.set_defaults(func=cmd_bench)

    i = sub.add_parser("info", help="backend, device and versions")
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        args.lr = _config(args).learning_rate
    try:
        return int(args.func(args))
    except (ValueError, TypeError, GpubpError, OSError, KeyboardInterrupt) as exc:
        if isinstance(exc, KeyboardInterrupt):
            print("gpubp: interrupted", file=sys.stderr)
            code = 130
        else:
            print(f"gpubp {args.command}: error: {exc}", file=sys.stderr)
            code = 2
        from . import distributed

        distributed.abort_run(code)  # under mpiexec: stop the other ranks too
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
