"""Data-parallel training: real ``mpiexec -n K`` runs of tests/mpi_worker.py, and the single-process path.

The MPI runs compare the distributed loss, gradients, steps and fit on uneven float64 shards
with one process on the concatenated rows (relative error < 1e-12), check that the replicas
are identical after fit, and that a failing rank stops the whole run with a clear error
instead of leaving the others blocked. Every run has a hard timeout so a hang fails the test.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import pytest

import gpubp
from gpubp import distributed
from gpubp.backend import cupy_problem

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("mpi_worker.py")
TIMEOUT_S = 90


def _mpiexec() -> Optional[str]:
    """The launcher of the MPI that mpi4py uses: beside this Python first (a venv), then PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _mpi_missing() -> Optional[str]:
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        return f'mpi4py is not installed ({exc}); pip install "gpubp[mpi]"'
    if _mpiexec() is None:
        return 'no mpiexec on PATH or beside the Python interpreter; pip install "gpubp[mpi]" brings the mpich runtime'
    return None


MPI_MISSING = _mpi_missing()
needs_mpi = pytest.mark.skipif(MPI_MISSING is not None, reason=str(MPI_MISSING))


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["GPUBP_BACKEND"] = "numpy"
    env["OMP_NUM_THREADS"] = "1"  # K ranks on a few cores: no BLAS thread oversubscription
    env["HYDRA_LAUNCHER"] = "fork"  # MPICH: start the ranks locally, never through ssh
    env["MPIEXEC_TIMEOUT"] = str(TIMEOUT_S)  # MPICH: the launcher itself kills a hung run
    # Open MPI, if that is the mpiexec found: allow root (containers) and more ranks than cores
    env["OMPI_ALLOW_RUN_AS_ROOT"] = env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    env["PRTE_MCA_rmaps_default_mapping_policy"] = ":oversubscribe"
    return env


def mpirun(n: int, args: List[str], env_extra: Optional[dict] = None) -> Tuple[int, str, float]:
    """(exit status, stdout + stderr, seconds) of ``mpiexec -n n python args...``; fails the test on a hang.

    ``args`` may continue with ``":", "-n", "1", program...`` for a launch of several programs.
    """
    env = _env()
    env.update(env_extra or {})
    cmd = [_mpiexec(), "-n", str(n), sys.executable, *args]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"`{' '.join(cmd)}` hung for {TIMEOUT_S} s; output:\n{out[-4000:]}")
    return proc.returncode, out, time.monotonic() - start


def _result(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line from rank 0; output:\n{out[-4000:]}"
    return json.loads(lines[0][len("RESULT "):])


@needs_mpi
@pytest.mark.parametrize("mode", ["check", "layers"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_distributed_matches_single_process_on_uneven_shards(ranks, mode):
    """mode "layers": BatchNorm's statistics summed over all ranks' rows, Dropout's masks drawn
    for each rank's rows where one process draws them on the concatenated batch."""
    rc, out, _ = mpirun(ranks, [str(WORKER), mode])
    assert rc == 0, out[-4000:]
    res = _result(out)
    assert res["size"] == ranks
    for key in ("loss", "grad", "step_loss", "step", "fit_loss", "fit", "val_loss"):
        assert res[key] < 1e-12, (key, res)
    assert res["replica_diff"] == 0.0, res  # bitwise identical replicas after shuffled fit
    assert res["mismatch_not_refused"] == 0.0, res  # different batch sizes: every rank raised


@needs_mpi
def test_failing_rank_stops_every_rank_with_a_clear_error():
    rc, out, _ = mpirun(2, [str(WORKER), "fail"])
    assert rc != 0, out[-4000:]
    assert "RuntimeError: injected failure on rank 1" in out
    assert "gpubp.distributed: rank 1 of 2 failed with RuntimeError" in out
    assert "RESULT" not in out


@needs_mpi
def test_divergence_stops_every_rank_alike():
    rc, out, _ = mpirun(2, [str(WORKER), "diverge"])
    assert rc == 0, out[-4000:]
    res = _result(out)
    assert res["not_raised_everywhere"] == 0.0, res  # every rank: NonFiniteError at epoch 1, batch 2
    assert res["replica_diff"] == 0.0 and res["restore_err"] == 0.0, res


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_callbacks_see_the_same_logs_on_every_rank_and_only_rank_0_writes_and_prints(tmp_path, ranks):
    rc, out, _ = mpirun(ranks, [str(WORKER), "callbacks", str(tmp_path)])
    assert rc == 0, out[-4000:]
    res = _result(out)
    assert res["logs_differ"] == 0.0 and res["not_stopped"] == 0.0, res
    assert res["replica_diff"] == 0.0 and res["restore_err"] == 0.0 and res["checkpoint_err"] == 0.0, res
    assert res["writers"] == 1.0 and res["stop_differs"] == 0.0, res
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    numbers = [int(line.split()[1].split("/")[0]) for line in epochs]
    assert numbers == list(range(1, len(numbers) + 1)) and " - val_loss " in epochs[0]  # one printer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz"]


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_that_disagree_all_raise_the_same_clear_error(ranks):
    """Different learning rates, momenta, optimizer types, architectures or entries on the ranks:
    every rank raises the same ValueError before any other collective (no raw MPI mismatch, no
    silently different replicas), and the run goes on."""
    rc, out, _ = mpirun(ranks, [str(WORKER), "agree"])
    assert rc == 0, out[-4000:]
    res = _result(out)
    refused = {k: v for k, v in res.items() if k.startswith("not refused")}
    assert len(refused) == 7 and not any(refused.values()), res
    assert res["replica_diff"] == 0.0, res


@needs_mpi
def test_a_learning_rate_that_differs_per_rank_once_fit_runs_is_refused_at_that_epoch():
    """A schedule giving each rank its own rate (epoch 1), a callback changing the last rank's after
    epoch 2: every rank raises the same ValueError at the start of that epoch, naming the
    hyper-parameter and the ranks, before any step of it (the weights are those the epoch began with)."""
    rc, out, _ = mpirun(3, [str(WORKER), "drift"])
    assert rc == 0, out[-4000:]
    res = _result(out)
    assert all(v == 0.0 for v in res.values() if not isinstance(v, int)), res
    messages = dict(line[len("MESSAGE "):].split(": ", 1) for line in out.splitlines() if line.startswith("MESSAGE "))
    schedule, callback = messages["schedule"], messages["callback"]
    assert "at the start of epoch 1" in schedule and "(ranks 1, 2 of 3 differ from rank 0)" in schedule, schedule
    assert schedule.endswith("a schedule or callback must set the optimizer alike on every rank"), schedule
    assert "SGD.lr: rank 0 has 0.1, rank 1 has 0.2, rank 2 has 0.30000000000000004" in schedule, schedule
    assert "at the start of epoch 3" in callback and "(rank 2 of 3 differs from rank 0)" in callback, callback
    assert "SGD.lr: rank 0 has 0.1, rank 2 has 0.05" in callback and "momentum" not in callback, callback


@needs_mpi
def test_first_synchronised_train_step_gives_every_rank_rank_0s_optimizer_state():
    """One rank's Adam stepped 5 times before (t = 5, its own moments): after 3 synchronised steps
    every rank holds the same weights, moments and t, equal to one process's run from rank 0's
    optimizer (a fresh one, or the stepped one when it is rank 0's)."""
    rc, out, _ = mpirun(3, [str(WORKER), "resync"])
    assert rc == 0, out[-4000:]
    res = _result(out)
    for stepped in (0, 1):
        key = f"rank {stepped} stepped: "
        assert res[key + "replica_diff"] == 0.0 and res[key + "state_diff"] == 0.0, res
        assert res[key + "vs one process"] < 1e-12 and res[key + "t wrong"] == 0.0, res


@needs_mpi
def test_one_rank_passing_comm_none_stops_the_run_with_a_clear_error():
    rc, out, _ = mpirun(2, [str(WORKER), "none"])
    assert rc != 0, out[-4000:]
    assert "gpubp.distributed: rank 1 of 2 failed with ValueError: comm is None in fit" in out, out[-4000:]
    assert "gpubp.distributed.alone()" in out and "RESULT" not in out


@needs_mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_distributed_resume_with_uneven_shards_is_exact(tmp_path, ranks):
    rc, out, _ = mpirun(ranks, [str(WORKER), "resume", str(tmp_path / "mid.npz")])
    assert rc == 0, out[-4000:]
    res = _result(out)
    assert res["resume_diff"] == 0.0 and res["resume_loss_diff"] == 0.0, res


def test_comm_none_is_refused_in_a_multi_rank_run(monkeypatch):
    """The check itself, without MPI: a world of several ranks refuses comm=None and takes alone()."""
    world = distributed.Communicator(None)
    world.rank, world.size = 1, 4
    monkeypatch.setattr(distributed, "_WORLD", world)
    net = gpubp.MLP([3, 2], dtype="float64", seed=0)
    X, Y = np.zeros((2, 3)), np.zeros((2, 2))
    for call in (lambda c: net.fit(X, Y, epochs=1, progress=False, comm=c), lambda c: net.loss_and_grads(X, Y, comm=c),
                 lambda c: net.train_step(X, Y, gpubp.SGD(0.1), comm=c)):
        before = net.params.copy()
        with pytest.raises(ValueError, match="rank 1 of a 4-rank run"):
            call(None)
        np.testing.assert_array_equal(net.params, before)
        call(distributed.alone())


@needs_mpi
def test_cli_train_distributed(tmp_path):
    ckpt = tmp_path / "digits.npz"
    rc, out, _ = mpirun(2, ["-m", "gpubp.cli", "train", "--distributed", "--epochs", "2", "--hidden", "16",
                            "--dtype", "float64", "--no-progress", "--save", str(ckpt)])
    assert rc == 0, out[-4000:]
    assert "distributed: 2 ranks, 719 training rows on rank 0" in out  # 1438 rows split 719 + 719
    assert sum(line.lstrip().startswith("epoch") for line in out.splitlines()) == 2  # rank 0 prints alone
    assert out.count("saved to") == 1
    net = gpubp.load(ckpt)
    assert net.sizes == (64, 16, 10)


@pytest.mark.gpu
@pytest.mark.skipif(cupy_problem() is not None, reason="NCCL path needs a CUDA GPU (none visible or CuPy missing)")
@needs_mpi
def test_nccl_collectives_and_gradients():
    from cupy.cuda import nccl

    if not getattr(nccl, "available", False):
        pytest.skip('CuPy cannot load NCCL (libnccl.so.2): pip install "gpubp[nccl12]"')
    import cupy as cp

    ranks = min(2, cp.cuda.runtime.getDeviceCount())  # NCCL allows one rank per GPU
    rc, out, _ = mpirun(ranks, [str(WORKER), "nccl"], env_extra={"GPUBP_BACKEND": "cupy"})
    assert rc == 0, out[-4000:]
    res = _result(out)
    for dtype in ("float32", "float64"):
        assert res[f"allreduce_{dtype}"] == 0.0 and res[f"broadcast_{dtype}"] == 0.0, res
    if ranks > 1:
        for key in ("loss", "grad", "step_loss", "step", "fit_loss", "fit", "val_loss"):
            assert res[key] < 1e-12, (key, res)
        assert res["replica_diff"] == 0.0, res


# ---- one process, no MPI ------------------------------------------------------------------------
def test_single_process_communicator_changes_nothing(backend):
    comm = distributed.Communicator(None)
    assert (comm.rank, comm.size, comm.mpi) == (0, 1, None)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(23, 5)), rng.integers(0, 3, 23)
    a = gpubp.MLP([5, 7, 3], loss="cross_entropy", dtype="float64", seed=1)
    b = gpubp.MLP([5, 7, 3], loss="cross_entropy", dtype="float64", seed=1)
    C_a, g_a = a.loss_and_grads(X, y, comm=comm)
    C_b, g_b = b.loss_and_grads(X, y)
    assert C_a == C_b
    for (dW_a, db_a), (dW_b, db_b) in zip(g_a, g_b):
        np.testing.assert_array_equal(backend.to_numpy(dW_a), backend.to_numpy(dW_b))
        np.testing.assert_array_equal(backend.to_numpy(db_a), backend.to_numpy(db_b))
    h_a = a.fit(X, y, epochs=2, batch_size=5, progress=False, comm=comm)
    h_b = b.fit(X, y, epochs=2, batch_size=5, progress=False)
    assert h_a["loss"] == h_b["loss"]
    np.testing.assert_array_equal(backend.to_numpy(a.params), backend.to_numpy(b.params))


def test_init_without_a_launcher_runs_alone(monkeypatch):
    monkeypatch.setattr(distributed, "_WORLD", None)
    comm = distributed.init(mpi=False)
    assert (comm.rank, comm.size, comm.local_rank) == (0, 1, 0)
    assert distributed.init(mpi=False) is comm


@pytest.mark.parametrize("n, size", [(10, 3), (7, 7), (3, 5), (1438, 2), (0, 2)])
def test_shard_splits_rows_into_contiguous_near_equal_blocks(n, size):
    blocks = []
    for rank in range(size):
        comm = distributed.Communicator(None)
        comm.rank, comm.size = rank, size
        blocks.append(comm.shard(n))
    rows = [i for s in blocks for i in range(s.start, s.stop)]
    assert rows == list(range(n))
    lengths = [s.stop - s.start for s in blocks]
    assert max(lengths) - min(lengths) <= 1


def test_comm_must_come_from_init():
    net = gpubp.MLP([3, 2], dtype="float64", seed=0)
    with pytest.raises(TypeError, match="gpubp.distributed.init"):
        net.loss_and_grads(np.zeros((2, 3)), np.zeros((2, 2)), comm="world")


@needs_mpi
def test_cli_error_on_one_rank_stops_the_run(tmp_path):
    # MPMD launch: rank 1 alone gets a data folder that does not exist and fails before
    # training, while rank 0 goes on into fit's first collective; without the abort rank 0
    # would wait there forever
    train = [sys.executable, "-m", "gpubp.cli", "train", "--distributed", "--epochs", "1", "--hidden", "8", "--no-progress"]
    rc, out, _ = mpirun(1, [*train[1:], ":", "-n", "1", *train, "--data-dir", str(tmp_path / "missing")])
    assert rc != 0, out[-4000:]
    assert out.count("gpubp train: error:") == 1 and "missing" in out, out[-4000:]
    assert "done in" not in out
