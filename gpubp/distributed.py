"""Data-parallel training across processes and machines, over MPI (mpi4py) and NCCL (CuPy).

Every rank holds a full replica of the network and its own shard of the data. After the
backward pass rank r holds in ``net.grads`` the mean gradient g_r over its n_r rows and the
mean loss C_r (MATH.md, averaging over the n samples of a batch). The batch of the whole run
is the union of the ranks' batches, N = sum_r n_r rows, so

    dC/dw = (1/N) sum_r n_r g_r        C = (1/N) sum_r n_r C_r,

which is exactly what one process computes on the concatenated rows. Each rank scales its
flat gradient buffer by n_r and writes n_r C_r and n_r into the buffer's two trailing slots;
ONE in-place all-reduce (sum) of ``[n_r g_r..., n_r C_r, n_r]`` gives the numerators and N
together, and one division by N finishes the step. Every rank then applies the same
optimizer update to the same parameters, so the replicas stay identical.

Transport: NumPy arrays go through ``MPI_Allreduce`` (mpi4py, ``MPI.IN_PLACE``); CuPy arrays
through NCCL (``cupy.cuda.nccl``, one GPU per rank, the NCCL id created on rank 0 and
broadcast over MPI), straight between the GPUs' buffers.

Uneven shards: a rank whose shard has run out of rows in an epoch of :func:`gpubp.train.fit`
takes part in the remaining steps with an empty batch (n_r = 0: zeros in the buffer), so
every rank calls the collective the same number of times per epoch.

Agreement: before its first collective a distributed entry compares, in one allgather, what
every rank passed (architecture, dtype, optimizer type and hyper-parameters, the loop's
settings, the entry itself); ranks that differ all raise the same ValueError instead of
training different replicas or failing inside MPI. ``fit`` compares the optimizer's
hyper-parameters again at the start of every epoch, after the callbacks' ``on_epoch_begin``
(:func:`agree_hyperparameters`), so a schedule or callback that sets them on some ranks only
stops the run there; the first synchronised ``train_step`` of a network and optimizer gives
every rank rank 0's parameters and optimizer state (buffers and ``t``). In a multi-rank run ``comm=None`` is refused
(:func:`check_comm`); :func:`alone` is the communicator for work on one rank by itself.

Failure: :func:`init` installs an excepthook on every rank of a multi-rank run. A rank that
dies of an uncaught exception prints its traceback and a line naming the rank, then calls
``MPI_Abort``, which makes the launcher stop all other ranks instead of leaving them blocked
in a collective forever.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any, List, Optional, Tuple

import numpy as np

from . import _optional
from .backend import is_device_array

# Environment variables that MPI launchers set in the processes they start (MPICH/Intel MPI
# hydra, Open MPI, PMIx, MVAPICH, Slurm's PMI).
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "PMI_FD")
_ABORT_GRACE_S = 0.5
_MPI_HINT = 'install the optional MPI support: pip install "gpubp[mpi]" (mpi4py and the mpich runtime)'


def launched_by_mpi() -> bool:
    """Whether this process was started by an MPI launcher (``mpiexec``, ``mpirun``, ``srun``)."""
    return any(var in os.environ for var in _LAUNCHER_VARS)


def _import_mpi() -> Any:
    try:
        from mpi4py import MPI
    except Exception as exc:  # ImportError, or an mpi4py that cannot find an MPI library
        raise ImportError(f"gpubp.distributed needs mpi4py ({type(exc).__name__}: {exc}); {_MPI_HINT}") from None
    return MPI


class Communicator:
    """The ranks of one data-parallel run.

    Attributes:
        rank: this process's index, 0..size-1 (rank 0 prints and writes checkpoints).
        size: the number of processes K.
        local_rank: this process's index among the ranks on the same machine (picks its GPU).
        local_size: the number of ranks on this machine.
        mpi: the ``mpi4py`` communicator, or ``None`` for a process running alone without MPI.

    Made by :func:`init`; pass it as ``comm=`` to ``loss_and_grads``, ``train_step`` and ``fit``.
    """

    def __init__(self, mpi_comm: Any = None):
        self.mpi = mpi_comm
        self._nccl: Any = None
        if mpi_comm is None:
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
            return
        MPI = _import_mpi()
        self.rank = int(mpi_comm.Get_rank())
        self.size = int(mpi_comm.Get_size())
        node = mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = int(node.Get_rank()), int(node.Get_size())
        node.Free()

    def __repr__(self) -> str:
        transport = "MPI" if self.mpi is not None else "single process"
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank}, {transport})"

    # ---- collectives on backend arrays (all ranks call them in the same order) ----------
    def allreduce_(self, buf: Any) -> Any:
        """Sum the contiguous array ``buf`` over all ranks, in place; returns ``buf``.

        NumPy arrays: one ``MPI_Allreduce`` with ``MPI.IN_PLACE``. CuPy arrays: one NCCL
        ``allReduce`` on the current stream (asynchronous, like any other kernel).
        """
        if self.mpi is None:
            return buf
        if is_device_array(buf):
            dtype, count = _nccl_type(buf)
            nccl = _nccl_module()
            self._nccl_comm().allReduce(buf.data.ptr, buf.data.ptr, count, dtype, nccl.NCCL_SUM,
                                        _optional.cupy.cuda.get_current_stream().ptr)
            return buf
        MPI = _import_mpi()
        self.mpi.Allreduce(MPI.IN_PLACE, _host_buffer(buf), op=MPI.SUM)
        return buf

    def broadcast_(self, buf: Any, root: int = 0) -> Any:
        """Overwrite the contiguous array ``buf`` on every rank with rank ``root``'s; returns ``buf``."""
        if self.mpi is None:
            return buf
        if is_device_array(buf):
            dtype, count = _nccl_type(buf)
            self._nccl_comm().broadcast(buf.data.ptr, buf.data.ptr, count, dtype, root,
                                        _optional.cupy.cuda.get_current_stream().ptr)
            return buf
        self.mpi.Bcast(_host_buffer(buf), root=root)
        return buf

    # ---- collectives on small host values -----------------------------------------------
    def sum(self, value: Any) -> Any:
        """The sum of a Python number (or tuple of numbers, elementwise) over all ranks."""
        if self.mpi is None:
            return value
        if isinstance(value, tuple):
            return tuple(self.mpi.allreduce(np.asarray(value, dtype=np.float64)).tolist())
        return self.mpi.allreduce(value)

    def allgather(self, value: Any) -> List[Any]:
        """``[value of rank 0, value of rank 1, ...]`` on every rank."""
        if self.mpi is None:
            return [value]
        return list(self.mpi.allgather(value))

    def barrier(self) -> None:
        """Wait until every rank has reached this point."""
        if self.mpi is not None:
            self.mpi.Barrier()

    def abort(self, code: int = 1) -> None:
        """Stop every rank of the run now (``MPI_Abort``); a plain exit for a process alone."""
        if self.mpi is None:
            raise SystemExit(code)
        self.mpi.Abort(code)

    # ---- data ---------------------------------------------------------------------------
    def shard(self, n: int) -> slice:
        """This rank's rows of a data set of ``n`` rows: contiguous blocks whose sizes differ by at most one."""
        q, r = divmod(int(n), self.size)
        start = self.rank * q + min(self.rank, r)
        return slice(start, start + q + (1 if self.rank < r else 0))

    # ---- NCCL -----------------------------------------------------------------------------
    def _nccl_comm(self) -> Any:
        """The NCCL communicator over the same ranks, created on first use (collectively)."""
        if self._nccl is None:
            nccl = _nccl_module()
            uid = nccl.get_unique_id() if self.rank == 0 else None
            uid = self.mpi.bcast(uid, root=0)
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        return self._nccl


def _host_buffer(buf: Any) -> np.ndarray:
    if not isinstance(buf, np.ndarray) or not buf.flags.c_contiguous:
        raise TypeError(f"expected a C-contiguous NumPy array to reduce; got {type(buf).__name__}")
    return buf


def _nccl_module() -> Any:
    cp = _optional.cupy
    if cp is None:
        raise ImportError(f"the NCCL transport needs CuPy ({_optional.CUPY_IMPORT_ERROR})")
    from cupy.cuda import nccl

    if not getattr(nccl, "available", True):
        raise ImportError(
            "CuPy cannot load the NCCL library (libnccl.so.2), which distributed training on the "
            'CuPy backend needs: pip install "gpubp[nccl12]" (CUDA 12) or "gpubp[nccl13]" (CUDA 13)'
        )
    return nccl


def _nccl_type(buf: Any) -> Tuple[int, int]:
    nccl = _nccl_module()
    if not buf.flags.c_contiguous:
        raise TypeError("NCCL reduces contiguous arrays only")
    types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
    try:
        return types[np.dtype(buf.dtype)], int(buf.size)
    except KeyError:
        raise TypeError(f"NCCL reduction of float32 or float64 arrays only; got {buf.dtype}") from None


# ---- start-up ---------------------------------------------------------------------------------
_WORLD: Optional[Communicator] = None


def init(mpi: Optional[bool] = None) -> Communicator:
    """The communicator of this run (the same object on every later call).

    Args:
        mpi: ``None`` (default) uses MPI when the process was started by an MPI launcher
            (``mpiexec -n K python ...``) or mpi4py is already imported, and runs alone
            (size 1, no MPI) otherwise; ``True`` always uses ``MPI.COMM_WORLD``; ``False``
            never does.

    Under MPI with several ranks this also: picks GPU ``local_rank % device count`` when
    CuPy sees a GPU (so call :func:`init` before building networks), and installs the
    excepthook that turns an uncaught exception on one rank into ``MPI_Abort`` of all ranks.
    """
    global _WORLD
    if _WORLD is not None and (mpi is None or (_WORLD.mpi is not None) == bool(mpi)):
        return _WORLD
    use_mpi = mpi if mpi is not None else (launched_by_mpi() or "mpi4py.MPI" in sys.modules)
    if not use_mpi:
        _WORLD = Communicator(None)
        return _WORLD
    MPI = _import_mpi()
    comm = Communicator(MPI.COMM_WORLD)
    if comm.size > 1:
        _install_abort_hook(comm)
        _pick_gpu(comm)
    _WORLD = comm
    return comm


def abort_run(code: int = 1) -> None:
    """Stop every rank of the current multi-rank run (``MPI_Abort``); nothing when running alone.

    For a rank that meets an error it handles itself (and would otherwise exit quietly while
    the other ranks wait for it in a collective).
    """
    if _WORLD is not None and _WORLD.size > 1:
        sys.stderr.flush()
        sys.stdout.flush()
        time.sleep(_ABORT_GRACE_S)
        _WORLD.abort(code)


def _pick_gpu(comm: Communicator) -> None:
    """One GPU per rank: device ``local_rank % count`` becomes the current CUDA device."""
    from . import backend as backend_mod

    if backend_mod.cupy_problem() is not None:
        return
    cp = _optional.cupy
    count = cp.cuda.runtime.getDeviceCount()
    cp.cuda.Device(comm.local_rank % count).use()
    current = backend_mod._current
    if current is not None and current.name == "cupy":  # made before init(): describe the new device
        backend_mod._current = backend_mod._make("cupy")


def _install_abort_hook(comm: Communicator) -> None:
    previous = sys.excepthook

    def hook(exc_type: Any, exc: BaseException, tb: Any) -> None:
        try:
            # the one-line summary first: MPI_Abort may cut off output still in the launcher's pipes
            print(f"gpubp.distributed: rank {comm.rank} of {comm.size} failed with {exc_type.__name__}: {exc}; "
                  f"aborting all {comm.size} ranks", file=sys.stderr, flush=True)
            if previous is not None and previous is not hook:
                previous(exc_type, exc, tb)
            else:
                traceback.print_exception(exc_type, exc, tb)
            sys.stderr.flush()
            time.sleep(_ABORT_GRACE_S)  # let the launcher forward the traceback before it kills the ranks
        finally:
            comm.mpi.Abort(1)

    sys.excepthook = hook


def alone() -> Communicator:
    """A communicator of this process alone (size 1, no MPI): ``comm=distributed.alone()`` trains
    or evaluates this rank's own network in a multi-rank run, where ``comm=None`` is refused."""
    return Communicator(None)


def check_comm(comm: Any, entry: str = "fit") -> Optional[Communicator]:
    """``comm`` if it is a :class:`Communicator` (or None); a TypeError otherwise.

    In a multi-rank run (:func:`init` found several ranks) ``None`` is a ValueError: the other
    ranks, which passed the run's communicator, would wait for this one in their first
    collective (or meet it in another one: a raw MPI size mismatch). This rank fails at once
    instead, and a rank that fails stops the run (see :func:`init`) with the message.
    """
    if comm is None:
        if _WORLD is not None and _WORLD.size > 1:
            raise ValueError(
                f"comm is None in {entry}, but this process is rank {_WORLD.rank} of a {_WORLD.size}-rank run "
                f"(gpubp.distributed.init()): pass comm=<the communicator init() returned> as every rank must, or "
                f"comm=gpubp.distributed.alone() to run {entry} on this rank alone")
        return None
    if isinstance(comm, Communicator):
        return comm
    raise TypeError(f"comm must be a communicator from gpubp.distributed.init(); got {type(comm).__name__} {comm!r}"[:300])


# ---- the network's collectives ---------------------------------------------------------------
def network_config(net: Any) -> dict:
    """What every rank's network must share: its architecture and dtype (not its seed, since rank
    0's parameters and shuffling state are broadcast)."""
    return {k: v for k, v in net.get_config().items() if k != "seed"}


def optimizer_config(optimizer: Any) -> Any:
    """What every rank's optimizer must share: its type and every hyper-parameter (None for none)."""
    if optimizer is None:
        return None
    get = getattr(optimizer, "get_config", None)
    return (type(optimizer).__name__, get() if callable(get) else None)


def broadcast_parameters(net: Any, comm: Communicator, optimizer: Any = None) -> None:
    """Copy rank 0's parameters, layer state (running statistics, dropout streams), shuffling
    generator (and the optimizer's state buffers and step count ``t``) to every rank, so the
    replicas start identical whatever each rank held before (an optimizer resumed on one rank)."""
    if comm.size == 1:
        return
    comm.broadcast_(net.params)
    if net.state.size:
        comm.broadcast_(net.state)
    net.set_host_state(comm.mpi.bcast(net.host_state(), root=0))
    net.rng.bit_generator.state = comm.mpi.bcast(net.rng.bit_generator.state, root=0)
    if optimizer is not None:
        bind = getattr(optimizer, "_bind", None)
        if callable(bind):  # every rank holds every buffer (zeros where it has not stepped) to receive rank 0's
            bind(net)
        names = sorted(optimizer.state)
        if comm.allgather(names) != [names] * comm.size:
            raise ValueError("the optimizers of the ranks hold different state buffers; start every rank the same way")
        for name in names:
            comm.broadcast_(optimizer.state[name])
        optimizer.t = comm.mpi.bcast(optimizer.t, root=0)
    net._dist_synced = (comm, net.params, optimizer)


def ensure_synchronized(net: Any, comm: Communicator, entry: str, optimizer: Any = None) -> None:
    """The first time ``net`` (with these parameters, and this optimizer) meets ``comm``: check
    that every rank calls ``entry`` with the same network and optimizer settings (a ValueError
    on every rank otherwise, before any other collective), then broadcast rank 0's parameters,
    layer state and, with an optimizer, its state buffers and step count ``t``
    (:func:`broadcast_parameters`, as ``fit`` does), so the replicas start identical.

    Later calls check nothing (no collective): change hyper-parameters between
    ``train_step`` calls alike on every rank (``fit`` compares them at every epoch).
    """
    if comm.size == 1:
        return
    synced = getattr(net, "_dist_synced", None)
    if (synced is None or synced[0] is not comm or synced[1] is not net.params
            or (optimizer is not None and synced[2] is not optimizer)):
        agree(comm, entry=entry, network=network_config(net), optimizer=optimizer_config(optimizer))
        broadcast_parameters(net, comm, optimizer)


def agree(comm: Communicator, **settings: Any) -> None:
    """One collective: every rank's ``settings`` must equal rank 0's, else the same ValueError
    naming the ranks that differ (and how) is raised on every rank."""
    global_rows(comm, 0, **settings)


def agree_hyperparameters(comm: Communicator, optimizer: Any, epoch: int) -> None:
    """One small allgather at the start of ``epoch`` of a distributed ``fit``, after the callbacks'
    ``on_epoch_begin`` (where schedules and callbacks set the learning rate): the optimizer's type
    and each hyper-parameter must equal rank 0's, else every rank raises the same ValueError
    naming the hyper-parameters and ranks that differ, before any step of the epoch."""
    if comm.size == 1:
        return
    name, config = optimizer_config(optimizer) or (None, None)
    settings = {"optimizer": name, **({f"{name}.{k}": v for k, v in config.items()} if isinstance(config, dict) else {})}
    _check_same(comm, comm.allgather(sorted(settings.items())),
                f" at the start of epoch {epoch}, after the callbacks' on_epoch_begin",
                "; a schedule or callback must set the optimizer alike on every rank")


def allreduce_gradients(net: Any, C: Any, n: int, comm: Communicator) -> Any:
    """Turn this rank's batch means into the means over every rank's rows (module docstring).

    ``net.grads`` holds g_r, the mean over this rank's ``n`` rows, and ``C`` its mean loss C_r;
    ``n = 0`` means this rank has no rows in this step (``C`` and the buffer are ignored).
    Afterwards ``net.grads`` = (1/N) sum_r n_r g_r on every rank; the return value is
    C = (1/N) sum_r n_r C_r as a 0-d backend array. One all-reduce of the flat buffer.
    """
    if comm.size == 1:
        return C
    buf = net.grad_buffer
    P = net.grads.size
    if n == 0:
        buf[...] = 0
    else:
        buf[:P] *= n
        buf[P] = C * n
        buf[P + 1] = n
    comm.allreduce_(buf)
    buf[: P + 1] /= buf[P + 1 : P + 2]
    return buf[P].copy()


def step_rows(net: Any, X: Any, comm: Any) -> Any:
    """The rows this step's averages are over: X's own, or after an all-reduce every rank's (the
    count :func:`allreduce_gradients` left in the buffer's last slot, a 0-d backend value)."""
    if comm is None or comm.size == 1:
        return X.shape[0]
    return net.grad_buffer[-1]


def global_rows(comm: Communicator, n: int, **settings: Any) -> Tuple[List[int], int]:
    """Every rank's row count and their sum, in one collective call.

    ``settings`` (e.g. ``batch_size=32, epochs=10``) must be equal on every rank: a run whose
    ranks disagree would call the all-reduce a different number of times and hang, so every
    rank raises the same ValueError instead.
    """
    gathered = comm.allgather((int(n), sorted(settings.items())))
    _check_same(comm, [s for _, s in gathered])
    counts = [c for c, _ in gathered]
    return counts, sum(counts)


def _check_same(comm: Communicator, gathered: List[Any], context: str = "", hint: str = "") -> None:
    """Raise, alike on every rank, a ValueError naming each setting whose value differs from rank
    0's and every rank that has another one; ``gathered``: each rank's sorted (name, value) pairs;
    ``context`` says when (after "the same settings"), ``hint`` ends the message."""
    differing = [r for r, s in enumerate(gathered) if s != gathered[0]]
    if not differing:
        return
    values = [dict(s) for s in gathered]
    first = values[0]
    keys = sorted({k for r in differing for k in set(first) | set(values[r]) if first.get(k) != values[r].get(k)})
    detail = "; ".join(
        f"{k}: rank 0 has {first.get(k)!r}, " + ", ".join(
            f"rank {r} has {values[r].get(k)!r}" for r in differing if values[r].get(k) != first.get(k))
        for k in keys)
    ranks = (f"rank {differing[0]} of {comm.size} differs" if len(differing) == 1 else
             f"ranks {', '.join(map(str, differing))} of {comm.size} differ")
    raise ValueError(f"every rank must train with the same settings{context} ({ranks} from rank 0): "
                     f"{detail[:1800]}{hint}")
