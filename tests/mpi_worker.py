"""Worker for tests/test_distributed.py, started as ``mpiexec -n K python tests/mpi_worker.py MODE``.

Modes:
    check  float64, NumPy backend: distributed loss_and_grads, train_step and fit on uneven
           shards against one process on the concatenated rows; replicas after fit.
    nccl   the same collectives on the CuPy backend through NCCL (needs a GPU per rank).
    fail   rank 1 raises in the middle of fit while rank 0 waits in the all-reduce.
    diverge  one rank's shard makes the second step's loss overflow: every rank must stop
           with the same NonFiniteError and the same restored (identical) weights.
    agree  ranks that differ in the optimizer's hyper-parameters, the architecture or the entry
           they call: every rank raises the same ValueError before any other collective.
    none   rank 1 passes comm=None to fit while rank 0 passes the communicator: rank 1 fails at
           once, naming comm, and the run stops.
    resume uneven shards, shuffled: a run saved at epoch 2 (by rank 0) and resumed on every rank
           from that file ends with the weights of the uninterrupted run, bit for bit.
    layers  ``check`` on a network with BatchNorm (statistics over all ranks' rows) and Dropout
           (each rank's rows continuing the previous ranks' in the stream): the same comparisons.
    callbacks  fit with validation_split, a schedule, clipping, EarlyStopping and ModelCheckpoint
           (into the folder given after the mode) and verbose=2: the same logs on every rank,
           identical replicas (after the best epoch's weights are restored), one writer, one
           printer, and a stop asked on one rank only ending every rank's training alike.
    drift  a per-rank learning rate once fit runs (a schedule giving each rank its own, a callback
           changing one rank's): every rank raises the same ValueError at the start of that
           epoch, before any of its steps, with identical replicas.
    resync train_step with an Adam that stepped 5 times on one rank only (as if resumed there):
           the first synchronised step gives every rank rank 0's state and t, so 3 steps later
           the replicas are identical and equal one process's run.

Rank 0 prints one line ``RESULT {json}`` with the largest errors over all ranks; the test
asserts on those numbers. Any exception on any rank aborts the whole run (non-zero exit).
"""
from __future__ import annotations

import json
import sys

import numpy as np

import gpubp
from helpers import rel_err
from gpubp import distributed

# uneven shard sizes by number of ranks: the last batches differ in size and the ranks run out
# of batches at different steps
SHARDS = {1: [13], 2: [7, 12], 3: [7, 12, 3], 4: [7, 12, 3, 5]}
SIZES = [5, 6, 4]
BATCH = 4
CLIP = 0.3  # below the gradients' norm in most steps: clipping is exercised
SOLO = distributed.alone()  # the single-process references each rank computes for itself


def data(loss: str, rows: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, SIZES[0]))
    if loss == "cross_entropy":
        Y = rng.integers(0, SIZES[-1], size=rows)
    else:
        Y = rng.uniform(0.0, 1.0, size=(rows, SIZES[-1]))
    return X, Y


LAYERS = False  # mode "layers": BatchNorm and Dropout between the Dense layers


def make_net(loss: str, activation: str, perturb: float = 0.0, l2: float = 0.0):
    if LAYERS:
        # no bias before the BatchNorm: its gradient is 0 but for rounding (the mean removes it), which
        # Adam, dividing by each entry's own size, magnifies: runs that round differently drift apart
        net = gpubp.MLP.from_layers(SIZES[0], [gpubp.layers.Dropout(0.2), gpubp.layers.Dense(SIZES[1], None, bias=False),
                                               gpubp.layers.BatchNorm(activation=activation), gpubp.layers.Dropout(0.3),
                                               gpubp.layers.Dense(SIZES[2])], loss=loss, dtype="float64", seed=7, l2=l2)
    else:
        net = gpubp.MLP(SIZES, activation=activation, loss=loss, dtype="float64", seed=7, l2=l2)
    if perturb:  # a replica that differs from rank 0: the first collective call must fix it
        net.params += perturb
    return net


def params(net) -> np.ndarray:
    return net.backend.to_numpy(net.params).copy()


def check(comm, backend: str) -> dict:
    K, r = comm.size, comm.rank
    counts = SHARDS[K]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    mine = slice(int(bounds[r]), int(bounds[r + 1]))
    errs = {"grad": 0.0, "loss": 0.0, "step": 0.0, "step_loss": 0.0, "fit": 0.0, "fit_loss": 0.0,
            "val_loss": 0.0, "replica_diff": 0.0}
    # the second case adds the L2 penalty on the weights: once per step, over all ranks' rows
    cases = [("sse", "sigmoid", gpubp.SGD(0.3, momentum=0.9), gpubp.SGD(0.3, momentum=0.9), 0.0),
             ("cross_entropy", "tanh", gpubp.Adam(0.05), gpubp.Adam(0.05), 0.4)]
    for loss, act, opt_dist, opt_ref, l2 in cases:
        X, Y = data(loss, int(bounds[-1]), seed=11)
        Xv, Yv = data(loss, 9, seed=12)

        # loss_and_grads: distributed on the shards == one process on all rows
        net = make_net(loss, act, perturb=0.5 * r, l2=l2)
        ref = make_net(loss, act, l2=l2)
        C, grads = net.loss_and_grads(X[mine], Y[mine], comm=comm)
        C_ref, grads_ref = ref.loss_and_grads(X, Y, comm=SOLO)
        errs["loss"] = max(errs["loss"], rel_err(C, C_ref))
        for (dW, db), (dW_ref, db_ref) in zip(grads, grads_ref):
            errs["grad"] = max(errs["grad"], rel_err(net.backend.to_numpy(dW), ref.backend.to_numpy(dW_ref)),
                               rel_err(net.backend.to_numpy(db), ref.backend.to_numpy(db_ref)))

        # train_step: three steps, every rank with a batch of another size (1 to 3 rows)
        for step in range(3):
            width = [1 + (q + step) % 3 for q in range(K)]
            rows = np.concatenate([np.arange(bounds[q], bounds[q] + width[q]) for q in range(K)]).astype(np.int64)
            own = slice(int(bounds[r]), int(bounds[r]) + width[r])
            C = net.train_step(X[own], Y[own], opt_dist, comm=comm)
            C_ref = ref.train_step(X[rows], Y[rows], opt_ref, comm=SOLO)
            errs["step_loss"] = max(errs["step_loss"], rel_err(float(C), float(C_ref)))
        errs["step"] = max(errs["step"], rel_err(params(net), params(ref)))

        # fit without shuffling == one process stepping through the union of the k-th batches
        net = make_net(loss, act, perturb=0.25 * r, l2=l2)
        ref = make_net(loss, act, l2=l2)
        opt, opt_r = type(opt_dist)(**_config(opt_dist)), type(opt_ref)(**_config(opt_ref))
        epochs = 2
        val_rows = np.array_split(np.arange(len(Xv)), K)[r]
        # with the gradients' norm clipped after the all-reduce and the lr halved every epoch
        hist = net.fit(X[mine], Y[mine], epochs=epochs, batch_size=BATCH, optimizer=opt, shuffle=False,
                       progress=False, validation_data=(Xv[val_rows], Yv[val_rows]), comm=comm, clip_norm=CLIP,
                       lr_schedule=gpubp.schedules.StepLR(1, gamma=0.5))
        n_steps = max(-(-c // BATCH) for c in counts)
        for epoch in range(epochs):
            total = 0.0
            if epoch:
                opt_r.lr = opt_r.lr * 0.5
            for k in range(n_steps):
                rows = np.concatenate([np.arange(bounds[q] + k * BATCH, min(bounds[q] + (k + 1) * BATCH, bounds[q + 1]))
                                       for q in range(K)]).astype(np.int64)
                total += float(ref.train_step(X[rows], Y[rows], opt_r, comm=SOLO, clip_norm=CLIP)) * len(rows)
            errs["fit_loss"] = max(errs["fit_loss"], rel_err(hist["loss"][epoch], total / len(X)))
            if epoch == epochs - 1:
                val_ref, _ = ref.evaluate(Xv, Yv)
                errs["val_loss"] = max(errs["val_loss"], rel_err(hist["val_loss"][epoch], val_ref))
        errs["fit"] = max(errs["fit"], rel_err(params(net), params(ref)))

        # fit with shuffling (each rank shuffles its own shard): replicas stay identical
        hist = net.fit(X[mine], Y[mine], epochs=3, batch_size=BATCH, optimizer=opt, progress=False, comm=comm)
        mine_p = params(net)
        rank0 = comm.mpi.bcast(mine_p if r == 0 else None, root=0)
        errs["replica_diff"] = max(errs["replica_diff"], float(np.max(np.abs(mine_p - rank0))))
        losses = comm.allgather(hist["loss"])
        if any(h != losses[0] for h in losses):
            raise AssertionError(f"ranks report different histories: {losses}")

    # ranks that disagree on the batch size, on passing validation data, or on the network all
    # refuse to start (instead of hanging in mismatched collectives)
    mismatches = [
        lambda: net.fit(X[mine], Y[mine], epochs=1, batch_size=BATCH + r, progress=False, comm=comm),
        lambda: net.fit(X[mine], Y[mine], epochs=1, batch_size=BATCH, progress=False, comm=comm,
                        validation_data=(Xv, Yv) if r == 0 else None),
        lambda: gpubp.MLP(SIZES[:-1] + [SIZES[-1] + r], activation="tanh", dtype="float64", seed=7).fit(
            X[mine], np.zeros((len(X[mine]), SIZES[-1] + r)), epochs=1, progress=False, comm=comm),
    ]
    errs["mismatch_not_refused"] = 0.0
    for attempt in mismatches:
        try:
            attempt()
            errs["mismatch_not_refused"] = 1.0
        except ValueError as exc:
            if "same settings" not in str(exc):
                errs["mismatch_not_refused"] = 1.0
    return errs


def _config(opt) -> dict:
    cfg = opt.get_config()
    if "betas" in cfg:
        cfg["betas"] = tuple(cfg["betas"])
    return cfg


def nccl(comm) -> dict:
    """The NCCL collectives on CuPy arrays, then the full check on the CuPy backend (>= 2 ranks)."""
    gpubp.set_backend("cupy")
    import cupy as cp

    out = {}
    for dtype in (cp.float32, cp.float64):
        buf = cp.arange(10, dtype=dtype) * (comm.rank + 1)
        comm.allreduce_(buf)
        factor = comm.size * (comm.size + 1) / 2
        out[f"allreduce_{np.dtype(dtype).name}"] = rel_err(buf.get(), np.arange(10) * factor)
        buf = cp.full(7, comm.rank + 3.0, dtype=dtype)
        comm.broadcast_(buf)
        out[f"broadcast_{np.dtype(dtype).name}"] = rel_err(buf.get(), np.full(7, 3.0))
    if comm.size > 1:
        out.update(check(comm, "cupy"))
    return out


def fail(comm) -> dict:
    X, Y = data("sse", 40, seed=3)
    net = make_net("mse", "relu")  # identity output: the overflow reaches the loss

    def boom(epoch, logs):
        if comm.rank == 1 and epoch == 1:
            raise RuntimeError("injected failure on rank 1")

    net.fit(X[comm.shard(len(X))], Y[comm.shard(len(X))], epochs=50, batch_size=4, progress=False,
            callback=boom, comm=comm)
    return {}


def diverge(comm) -> dict:
    X, Y = data("mse", 8 * comm.size, seed=5)
    mine = comm.shard(len(X))
    Xr = X[mine].copy()
    if comm.rank == comm.size - 1:
        Xr[5] = 1e300  # batch 2 of this rank (batch size 4): its forward pass overflows to inf
    net = make_net("mse", "relu")  # identity output: the overflow reaches the loss
    start = params(net)
    where = (0, 0)
    try:
        net.fit(Xr, Y[mine], epochs=3, batch_size=4, optimizer=gpubp.SGD(0.1), shuffle=False, progress=False,
                comm=comm)
    except gpubp.NonFiniteError as exc:
        where = (exc.epoch, exc.batch)
    mine_p = params(net)
    rank0 = comm.mpi.bcast(mine_p if comm.rank == 0 else None, root=0)
    wheres = comm.allgather(where)
    return {
        "not_raised_everywhere": float(any(w != (1, 2) for w in wheres)),
        "replica_diff": float(np.max(np.abs(mine_p - rank0))),
        # batch 2 fails: the newest finite state is the one before batch 1, the start of the epoch
        "restore_err": float(np.max(np.abs(mine_p - start))),
    }


def callbacks(comm, folder: str) -> dict:
    from gpubp.callbacks import Callback, EarlyStopping, ModelCheckpoint

    K, r = comm.size, comm.rank
    X, Y = data("cross_entropy", 160, seed=21)
    mine = comm.shard(len(X))
    out = {}

    class Logs(Callback):
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, epoch, logs):
            self.seen.append((epoch, dict(logs)))

    # early stopping and the best checkpoint, at a learning rate that overfits quickly
    net = make_net("cross_entropy", "tanh")
    es, rec = EarlyStopping(patience=2), Logs()
    ck = ModelCheckpoint(f"{folder}/best.npz")
    hist = net.fit(X[mine], Y[mine], epochs=40, batch_size=BATCH, optimizer=gpubp.Adam(0.05), validation_split=0.3,
                   callbacks=[es, ck, rec], lr_schedule=gpubp.schedules.CosineAnnealingLR(40, warmup_epochs=2),
                   clip_norm=1.0, verbose=2, comm=comm)
    every = comm.allgather((dict(hist), hist.epochs, rec.seen, es.best_epoch, es.stopped_epoch))
    out["logs_differ"] = float(any(e != every[0] for e in every))
    out["not_stopped"] = float(not 0 < es.stopped_epoch < 40)
    p = params(net)
    out["replica_diff"] = float(np.max(np.abs(p - comm.mpi.bcast(p if r == 0 else None, root=0))))
    out["writers"] = float(comm.sum(int(bool(ck.saved))))
    # the restored weights give the best epoch's validation loss over every rank's held-out rows
    n = len(X[mine])
    cut = n - (n - int(n * 0.7))
    loss, _ = net.evaluate(X[mine][cut:], Y[mine][cut:])
    sums = comm.sum((loss * (n - cut), float(n - cut)))
    out["restore_err"] = abs(sums[0] / sums[1] - hist.best("val_loss").value)
    saved = gpubp.load(f"{folder}/best.npz")
    out["checkpoint_err"] = float(np.max(np.abs(params(saved) - p))) + float(saved.epoch != es.best_epoch)

    # a stop asked on the last rank only ends every rank's training after the same epoch
    class StopOnLastRank(Callback):
        def on_epoch_end(self, epoch, logs):
            if r == K - 1 and epoch == 3:
                self.net.stop_training = True

    net = make_net("cross_entropy", "tanh")
    hist = net.fit(X[mine], Y[mine], epochs=10, batch_size=BATCH, callbacks=[StopOnLastRank()], verbose=0, comm=comm)
    out["stop_differs"] = float(any(e != [1, 2, 3] for e in comm.allgather(hist.epochs)))
    return out


def agree(comm) -> dict:
    """Every way the ranks can disagree is one ValueError on every rank, before any collective."""
    r = comm.rank
    X, Y = data("cross_entropy", 6, seed=4)
    attempts = {
        "lr": lambda: make_net("cross_entropy", "tanh").fit(X, Y, epochs=1, batch_size=2, progress=False, comm=comm,
                                                            optimizer=gpubp.SGD(0.1 * (r + 1))),
        "momentum": lambda: make_net("cross_entropy", "tanh").fit(X, Y, epochs=1, progress=False, comm=comm,
                                                                  optimizer=gpubp.SGD(0.1, momentum=0.3 * r)),
        "optimizer type": lambda: make_net("cross_entropy", "tanh").fit(
            X, Y, epochs=1, progress=False, comm=comm, optimizer=gpubp.Adam() if r else gpubp.SGD(0.1)),
        "architecture in train_step": lambda: gpubp.MLP([5, 6 + r, 4], loss="cross_entropy", seed=7).train_step(
            X, Y, gpubp.SGD(0.1), comm=comm),
        "architecture in loss_and_grads": lambda: gpubp.MLP([5, 6, 4], loss="cross_entropy", dtype=("float32", "float64")[r % 2],
                                                            seed=7).loss_and_grads(X, Y, comm=comm),
        "lr in train_step": lambda: make_net("cross_entropy", "tanh").train_step(X, Y, gpubp.Adam(1e-3 * (r + 1)),
                                                                                 comm=comm),
        "entry": lambda: (make_net("cross_entropy", "tanh").train_step(X, Y, gpubp.SGD(0.1), comm=comm) if r == 0
                          else make_net("cross_entropy", "tanh").loss_and_grads(X, Y, comm=comm)),
    }
    out = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            out[f"not refused: {name}"] = 1.0
        except ValueError as exc:
            out[f"not refused: {name}"] = 0.0 if "same settings" in str(exc) else 1.0
    # the same settings still train together after all those refusals
    net = make_net("cross_entropy", "tanh")
    net.fit(X, Y, epochs=2, batch_size=2, optimizer=gpubp.SGD(0.1), progress=False, comm=comm)
    mine_p = params(net)
    rank0 = comm.mpi.bcast(mine_p if r == 0 else None, root=0)
    out["replica_diff"] = float(np.max(np.abs(mine_p - rank0)))
    return out


def none(comm) -> dict:
    X, Y = data("cross_entropy", 6, seed=4)
    make_net("cross_entropy", "tanh").fit(X, Y, epochs=1, progress=False, comm=comm if comm.rank == 0 else None)
    return {}


def resume(comm, path: str) -> dict:
    """Uneven shards (7, 12, 3 rows), shuffled; rank 0 saves at epoch 2; every rank resumes."""
    counts = SHARDS[comm.size]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    mine = slice(int(bounds[comm.rank]), int(bounds[comm.rank + 1]))
    X, Y = data("cross_entropy", int(bounds[-1]), seed=21)
    net, opt = make_net("cross_entropy", "tanh"), gpubp.Adam(0.02)

    def save_at_2(epoch, logs):
        if epoch == 2 and comm.rank == 0:
            net.save(path, optimizer=opt)

    full = net.fit(X[mine], Y[mine], epochs=5, batch_size=BATCH, optimizer=opt, callback=save_at_2, progress=False,
                   comm=comm)
    comm.barrier()  # the file is written before anyone reads it
    back = gpubp.load(path)
    opt2 = gpubp.load_optimizer(path, back)
    rest = back.fit(X[mine], Y[mine], epochs=5, batch_size=BATCH, optimizer=opt2, initial_epoch=back.epoch,
                    progress=False, comm=comm)
    return {"resume_diff": float(np.max(np.abs(params(back) - params(net)))),
            "resume_loss_diff": float(np.max(np.abs(np.array(rest["loss"]) - np.array(full["loss"][2:]))))}


def drift(comm) -> dict:
    from gpubp.callbacks import Callback

    r, last = comm.rank, comm.size - 1
    X, Y = data("cross_entropy", 12, seed=4)
    out, messages = {}, {}

    class ChangeLastRanksLr(Callback):
        """After epoch 2 the last rank alone lowers its learning rate; keeps the weights it saw then."""

        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                self.kept = params(self.net)
                if r == last:
                    self.net_optimizer.lr = 0.05

    runs = {
        "schedule": dict(lr_schedule=lambda epoch, lr: 0.1 * (1 + r)),  # refused at epoch 1
        "callback": dict(callbacks=[ChangeLastRanksLr()]),  # refused at epoch 3
    }
    for name, extra in runs.items():
        net, opt = make_net("cross_entropy", "tanh"), gpubp.SGD(0.1, momentum=0.5)
        for cb in extra.get("callbacks", []):
            cb.net_optimizer = opt
        kept = params(net)
        try:
            net.fit(X, Y, epochs=4, batch_size=4, optimizer=opt, progress=False, comm=comm, **extra)
            out[f"not refused: {name}"] = 1.0
        except ValueError as exc:
            out[f"not refused: {name}"] = 0.0
            messages[name] = str(exc)
        if name == "callback":
            kept = extra["callbacks"][0].kept
            out["callback: epochs done wrong"] = float(net.epoch != 2)
        # no step of the refused epoch ran, and the replicas are alike
        out[f"{name}: moved"] = float(np.max(np.abs(params(net) - kept)))
        p = params(net)
        out[f"{name}: replica_diff"] = float(np.max(np.abs(p - comm.mpi.bcast(p if r == 0 else None, root=0))))
    every = comm.allgather(messages)
    out["messages differ"] = float(any(m != every[0] for m in every))
    if r == 0:
        for name, msg in messages.items():
            print(f"MESSAGE {name}: {msg}", flush=True)
    return out


def resync(comm) -> dict:
    K, r = comm.size, comm.rank
    bounds = np.concatenate([[0], np.cumsum(SHARDS[K])])
    X, Y = data("cross_entropy", int(bounds[-1]), seed=11)
    shard = [slice(int(bounds[q]), int(bounds[q + 1])) for q in range(K)]
    out = {}
    for stepped in (1, 0):  # the rank whose Adam has taken 5 steps (of another replica) before
        net, opt = make_net("cross_entropy", "tanh"), gpubp.Adam(0.05)
        ref, ref_opt = make_net("cross_entropy", "tanh"), gpubp.Adam(0.05)
        if r == stepped:
            warm = make_net("cross_entropy", "tanh", perturb=0.3)
            for _ in range(5):
                warm.train_step(X[shard[r]], Y[shard[r]], opt, comm=SOLO)
        if stepped == 0:  # every rank starts from rank 0's state: the reference too
            warm = make_net("cross_entropy", "tanh", perturb=0.3)
            for _ in range(5):
                warm.train_step(X[shard[0]], Y[shard[0]], ref_opt, comm=SOLO)
        rows = np.concatenate([np.arange(bounds[q], bounds[q] + 2) for q in range(K)])
        own = slice(int(bounds[r]), int(bounds[r]) + 2)
        for _ in range(3):
            net.train_step(X[own], Y[own], opt, comm=comm)
            ref.train_step(X[rows], Y[rows], ref_opt, comm=SOLO)
        p = params(net)
        m = opt.state["m"].copy()
        out[f"rank {stepped} stepped: replica_diff"] = float(np.max(np.abs(p - comm.mpi.bcast(p if r == 0 else None))))
        out[f"rank {stepped} stepped: state_diff"] = float(np.max(np.abs(m - comm.mpi.bcast(m if r == 0 else None))))
        out[f"rank {stepped} stepped: vs one process"] = rel_err(p, params(ref))
        out[f"rank {stepped} stepped: t wrong"] = float(opt.t != ref_opt.t or opt.t != (8 if stepped == 0 else 3))
    return out


def main() -> None:
    global LAYERS
    mode = sys.argv[1]
    comm = distributed.init()
    if mode == "layers":
        LAYERS, mode = True, "check"
    if mode == "check":
        errs = check(comm, "numpy")
    elif mode == "nccl":
        errs = nccl(comm)
    elif mode == "fail":
        errs = fail(comm)
    elif mode == "diverge":
        errs = diverge(comm)
    elif mode == "callbacks":
        errs = callbacks(comm, sys.argv[2])
    elif mode == "agree":
        errs = agree(comm)
    elif mode == "none":
        errs = none(comm)
    elif mode == "resume":
        errs = resume(comm, sys.argv[2])
    elif mode == "drift":
        errs = drift(comm)
    elif mode == "resync":
        errs = resync(comm)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    from mpi4py import MPI

    worst = {k: comm.mpi.allreduce(v, op=MPI.MAX) for k, v in sorted(errs.items())}
    if comm.rank == 0:
        print("RESULT " + json.dumps({"size": comm.size, **worst}), flush=True)


if __name__ == "__main__":
    main()
