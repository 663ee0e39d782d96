"""Kernel programs are compiled once per process, dtype and device, however many backends,
networks and gradchecks are made, and kept on disk for the next process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import gpubp
import host_kernels
from helpers import dense_sources
from gpubp.ops import cuda_kernels as ck
from gpubp.ops import kernel_cache as kc
from gpubp.ops.cuda_launcher import CudaKernels
from gpubp.ops.standin import StandInCompiler, StandInDevice, standin_backend

ROOT = Path(__file__).resolve().parents[1]
needs_cxx = pytest.mark.skipif(host_kernels.compiler_missing() is not None, reason=str(host_kernels.compiler_missing()))
_names = iter(range(10**6))


def fresh(prefix: str) -> str:
    """A device name no earlier test used: the process-wide cache starts empty for it."""
    return f"{prefix}-{os.getpid()}-{next(_names)}"


DENSE_SOURCES = dense_sources()


@needs_cxx
def test_many_backends_networks_and_gradchecks_compile_each_program_once():
    compiler = host_kernels.HostCompiler(host_kernels.build_dir())
    name = fresh("host")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(9, 5))
    y = rng.integers(0, 3, 9)
    errors = []
    for i in range(4):  # four backends, each with its own CupyOps and launcher, on one device
        launcher = CudaKernels(host_kernels.HostDevice(name=name), compiler, disk=None)
        backend = host_kernels.host_backend(launcher=launcher)
        for dtype in ("float32", "float64"):
            with gpubp.use_backend(backend):
                net = gpubp.MLP([5, 7, 3], activation=["tanh", "relu", "gelu"][i % 3], loss="cross_entropy",
                                dtype=dtype, seed=i)
            for _ in range(2):
                net.train_step(X, y, gpubp.SGD(0.1, momentum=0.9) if i % 2 else gpubp.Adam(1e-2))
            errors.append(gpubp.gradcheck(net, X, y))  # its float64 twin runs on the same backend
        assert launcher.compiled == sorted((s, d, 0) for s in DENSE_SOURCES for d in ck.DTYPES)
    assert max(errors) < 1e-6  # the cached programs compute the right thing
    assert compiler.calls == {(s, d): 1 for s in DENSE_SOURCES for d in ck.DTYPES}
    assert compiler.compiles == len(DENSE_SOURCES) * len(ck.DTYPES)


def test_a_new_device_compiles_again_and_threads_wait_for_one_build():
    class SlowCompiler(StandInCompiler):
        def compile(self, *args, **kwargs):
            time.sleep(0.05)
            return super().compile(*args, **kwargs)

    compiler = SlowCompiler()
    device = StandInDevice(name=fresh("threads"))
    launchers = [CudaKernels(device, compiler, disk=None) for _ in range(8)]
    barrier = threading.Barrier(len(launchers))
    found = []

    def work(k: CudaKernels) -> None:
        barrier.wait()
        found.append(k.function("bias_grad", "float32"))

    threads = [threading.Thread(target=work, args=(k,)) for k in launchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiler.compiles == 1 and len(set(f.lowered for f in found)) == 1
    CudaKernels(StandInDevice(name=fresh("other")), compiler, disk=None).function("bias_grad", "float32")
    assert compiler.compiles == 2  # another device loads its own copy


def _program(text: str = "text") -> ck.CompiledProgram:
    return ck.CompiledProgram(b"\x7fELF binary \x00\xff" * 50, "sm_90", {"f<float>": "_Z1fIfEvv"}, "a warning")


def test_disk_entries_round_trip_and_are_written_atomically(tmp_path):
    disk = kc.DiskCache(tmp_path / "kernels")
    key = kc.disk_key("text", ["f<float>"], ["--std=c++17"], "nvrtc 12.9", "sm_90")
    assert disk.get(key) is None and disk.misses == 1
    disk.put(key, _program())
    assert disk.get(key) == _program() and disk.hits == 1
    assert [p.name for p in (tmp_path / "kernels").iterdir()] == [f"{key}.bin"]  # no temporary left behind
    others = {kc.disk_key(*args) for args in [("text2", ["f<float>"], ["--std=c++17"], "nvrtc 12.9", "sm_90"),
                                              ("text", ["f<double>"], ["--std=c++17"], "nvrtc 12.9", "sm_90"),
                                              ("text", ["f<float>"], ["--std=c++14"], "nvrtc 12.9", "sm_90"),
                                              ("text", ["f<float>"], ["--std=c++17"], "nvrtc 13.0", "sm_90"),
                                              ("text", ["f<float>"], ["--std=c++17"], "nvrtc 12.9", "sm_80")]}
    assert len(others) == 5 and key not in others  # every input of a compile is part of the key


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty", "garbage", "old format"])
def test_unreadable_entries_are_ignored_and_rebuilt(tmp_path, damage):
    disk = kc.DiskCache(tmp_path)
    key = "k" * 64
    disk.put(key, _program())
    path = disk.path(key)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "flip": data[:40] + bytes([data[40] ^ 1]) + data[41:],
                      "empty": b"", "garbage": os.urandom(300),
                      "old format": b"gpubp kernel cache 0\n" + data[len(kc.FORMAT):]}[damage])
    assert disk.get(key) is None and disk.rejected == 1
    compiles = []
    program = kc.compile_with_disk_cache(lambda: compiles.append(1) or _program(), "text", ["f<float>"], [], "v", "sm_90",
                                         kc.DiskCache(tmp_path))
    assert program == _program() and compiles == [1]


def test_an_unwritable_folder_costs_only_the_compile(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    disk = kc.DiskCache(blocker / "kernels")
    disk.put("k", _program())  # no exception
    assert disk.write_errors and disk.get("k") is None


def test_environment_names_the_folder_and_switches_the_disk_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv(kc.ENV_DIR, str(tmp_path / "c"))
    monkeypatch.delenv(kc.ENV_DISK, raising=False)
    assert kc.default_disk_cache().directory == tmp_path / "c" / "kernels"
    monkeypatch.delenv(kc.ENV_DIR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kc.default_directory() == tmp_path / "xdg" / "gpubp"
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv(kc.ENV_DISK, off)
        assert kc.default_disk_cache() is None
    monkeypatch.setenv(kc.ENV_DISK, "1")
    assert kc.default_disk_cache() is not None


_CHILD = """
import json, sys
import numpy as np
import gpubp
from gpubp.ops.cuda_launcher import CudaKernels
from gpubp.ops.standin import StandInCompiler, StandInDevice, standin_backend
compiler = StandInCompiler()
launcher = CudaKernels(StandInDevice(), compiler)  # the disk cache as the environment says
with gpubp.use_backend(standin_backend(launcher)):
    net = gpubp.MLP([6, 5, 3], loss="cross_entropy", seed=0)
net.train_step(np.ones((4, 6)), np.array([0, 1, 2, 0]), gpubp.SGD(0.1))
names = {k: launcher.function(k, "float32", "relu" if k == "act_backward" else None).lowered
         for k in ("act_backward", "head_xent_labels", "bias_grad", "sgd")}
print(json.dumps({"compiles": compiler.compiles, "names": names}))
"""


def test_a_second_process_reads_the_compiled_programs_from_disk(tmp_path):
    env = dict(os.environ, GPUBP_CACHE_DIR=str(tmp_path), GPUBP_DISK_CACHE="1", PYTHONPATH=str(ROOT))
    first, second = _child(env), _child(env)
    assert first["compiles"] == len(DENSE_SOURCES)  # every float32 program a Dense network uses, once
    assert second["compiles"] == 0  # all read from disk
    assert second["names"] == first["names"]
    assert len(list((tmp_path / "kernels").glob("*.bin"))) == len(DENSE_SOURCES)
    env[kc.ENV_DISK] = "0"
    assert _child(env)["compiles"] == len(DENSE_SOURCES)


def _child(env):
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_standin_backend_runs_the_cupy_path_and_counts_its_launches():
    backend = standin_backend(CudaKernels(StandInDevice(name=fresh("count")), StandInCompiler(), disk=None))
    with gpubp.use_backend(backend):
        net = gpubp.MLP([784, 512, 256, 10], loss="cross_entropy", seed=0)
    X = np.zeros((256, 784), np.float32)
    y = np.zeros(256, np.int64)
    device = backend.ops.kernels.device
    net.train_batch(X, y, gpubp.SGD(0.01))
    device.reset()
    net.train_batch(X, y, gpubp.SGD(0.01))
    assert device.kernels["gemm"] == 3 + 3 + 2
    assert device.launches == 19  # 3 GEMM + 3 fused forward, loss head, loss value, 3 + 3 + 2 + 2 backward, update
