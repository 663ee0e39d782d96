"""Every kernel source compiles with NVRTC (the compiler CuPy uses) for sm_80 and sm_90,
with every template instantiation gpubp launches; no GPU is needed. Also the pure parts of
the launcher: target architecture and launch shapes."""
from __future__ import annotations

import dataclasses

import pytest

from gpubp.activations import ACTIVATIONS
from gpubp.ops import cuda_kernels as ck
from helpers import dense_sources


def _nvrtc_problem():
    try:
        ck.nvrtc_module()
    except Exception as exc:  # ImportError, or the library not found by CuPy's loader
        return f"NVRTC is not available ({type(exc).__name__}: {exc}); install gpubp[cuda12]"
    return None


NVRTC_PROBLEM = _nvrtc_problem()
needs_nvrtc = pytest.mark.skipif(NVRTC_PROBLEM is not None, reason=str(NVRTC_PROBLEM))


@needs_nvrtc
@pytest.mark.parametrize("arch", ck.CHECK_ARCHS)
@pytest.mark.parametrize("source", ck.SOURCES)
def test_source_compiles_with_every_instantiation(source, arch):
    supported = ck.nvrtc_module().getSupportedArchs()
    assert int(arch[3:]) in supported, f"this NVRTC ({ck.nvrtc_module().getVersion()}) cannot target {arch}"
    names = ck.instantiations(source)
    program = ck.nvrtc_compile(ck.program_source(source), source, arch, names)
    assert program.log == "", f"NVRTC warnings for {source}:\n{program.log}"
    assert set(program.lowered) == set(names)
    assert all(m.startswith("_Z") for m in program.lowered.values())  # mangled template instances
    assert len(set(program.lowered.values())) == len(names)
    assert program.binary[:4] == b"\x7fELF"  # a cubin for the real architecture


@needs_nvrtc
def test_every_kernel_of_the_table_is_compiled():
    compiled = {e for s in ck.SOURCES for e in ck.instantiations(s)}
    for spec in ck.KERNELS.values():
        assert spec.instantiation("float32", "relu" if spec.per_activation else None) in compiled
        assert f"void {spec.name}(" in (ck.kernel_dir() / spec.source).read_text().replace("\n", " ").replace("  ", " ")


@needs_nvrtc
def test_a_syntax_error_fails_with_the_compiler_log():
    text = (ck.kernel_dir() / "gradients.cu").read_text()
    broken = text.replace("out[k * cols + c] = s * scale;", "out[k * cols + c] = s * scale", 1)  # missing ;
    assert broken != text
    line = next(i for i, l in enumerate(broken.splitlines(), start=1) if "out[k * cols + c] = s * scale" in l)
    with pytest.raises(ck.KernelCompileError) as info:
        ck.nvrtc_compile(ck.program_source("gradients.cu", text=broken), "gradients.cu", "sm_80",
                         ck.instantiations("gradients.cu"))
    log = info.value.log
    # the #line directives make NVRTC name the real file and line (the statement after the
    # missing semicolon), not a line of the assembled program
    assert f"gradients.cu({line + 1}): error: expected a \";\"" in log, log
    assert log in str(info.value)


@needs_nvrtc
def test_a_type_error_in_an_activation_body_fails_with_the_log():
    bad = dataclasses.replace(ACTIVATIONS["relu"], name="broken", cuda_grad="return no_such_function(z, a);")
    with pytest.raises(ck.KernelCompileError, match="no_such_function") as info:
        ck.nvrtc_compile(ck.program_source("activation.cu", acts=[bad]), "activation.cu", "sm_90",
                         ["act_backward<float, gpubp_act_broken>"])
    assert "activations (generated from gpubp/activations.py)" in info.value.log


def test_runtime_arch_prefers_the_devices_own_cubin():
    supported = (75, 80, 86, 89, 90, 100)
    assert ck.runtime_arch(90, supported) == "sm_90"
    assert ck.runtime_arch(87, supported) == "compute_86"  # PTX, compiled by the driver
    assert ck.runtime_arch(120, supported) == "compute_100"
    with pytest.raises(ck.KernelCompileError, match="compute capability 6.0"):
        ck.runtime_arch(60, supported)


@pytest.mark.parametrize("n", [1, 255, 256, 257, 10**6, 3 * 2**31])
def test_flat_launch_shape_fills_the_device_and_no_more(n):
    (grid,), (block,) = ck.launch_shape("flat", {"size": n}, multiprocessors=132)
    assert block == ck.FLAT_BLOCK
    assert 1 <= grid <= 132 * ck.THREADS_PER_SM // block  # grid-stride covers the rest
    assert grid == min(-(-n // block), 132 * ck.THREADS_PER_SM // block)


@pytest.mark.parametrize("rows,cols", [(1, 1), (7, 10), (4096, 10), (3, 1000), (100000, 64)])
def test_row_and_column_launch_shapes(rows, cols):
    (grid,), (block,) = ck.launch_shape("rows", {"rows": rows, "cols": cols}, multiprocessors=108)
    assert 32 <= block <= ck.MAX_BLOCK and block & (block - 1) == 0
    assert block >= min(cols, ck.MAX_BLOCK) and 1 <= grid <= rows
    chunks = ck.column_chunks(rows, cols, multiprocessors=108)
    (gx, gy), (bx, by) = ck.launch_shape("columns", {"rows": rows, "cols": cols, "chunks": chunks},
                                         multiprocessors=108)
    assert bx * by <= ck.MAX_BLOCK and by & (by - 1) == 0 and bx <= 32
    assert by <= max(1, 2 * rows) and 1 <= gx <= -(-cols // bx) and 1 <= gy <= chunks


@pytest.mark.parametrize("rows,cols", [(65536, 128), (4096, 512), (65536, 2048), (10**6, 10), (4099, 1031)])
def test_a_tall_bias_gradient_fills_the_device(rows, cols):
    """dC/db of a tall Delta splits its rows across blocks so that every SM gets work (it
    used to launch ceil(cols / 32) blocks: 4 for (65536, 128) on 132 SMs)."""
    sms = 132
    chunks = ck.column_chunks(rows, cols, multiprocessors=sms)
    assert 1 < chunks <= -(-rows // ck.MIN_CHUNK_ROWS)
    (gx, gy), (bx, by) = ck.launch_shape("columns", {"rows": rows, "cols": cols, "chunks": chunks},
                                         multiprocessors=sms)
    assert gy == chunks and gx == -(-cols // bx)  # one block per (column tile, chunk)
    assert gx * gy * bx * by >= 0.9 * sms * ck.THREADS_PER_SM  # against 4 blocks of 256 threads before
    # the second pass sums the (chunks, cols) partial sums in one launch
    (gx2, gy2), _ = ck.launch_shape("columns", {"rows": chunks, "cols": cols, "chunks": 1}, multiprocessors=sms)
    assert gy2 == 1


@pytest.mark.parametrize("rows,cols", [(256, 512), (256, 10), (100, 7), (257, 65536)])
def test_a_short_or_wide_bias_gradient_is_one_launch(rows, cols):
    assert ck.column_chunks(rows, cols, multiprocessors=132) == 1


@needs_nvrtc
def test_nvrtc_binaries_round_trip_through_the_disk_cache(tmp_path):
    from gpubp.ops import kernel_cache as kc
    from gpubp.ops.cuda_launcher import NvrtcCompiler

    nvrtc = NvrtcCompiler()
    text, names = ck.program_source("gradients.cu"), ck.instantiations("gradients.cu", ["float32"])
    calls = []

    def compile_once():
        calls.append(1)
        return nvrtc.compile(text, "gradients.cu", "sm_90", names, ck.NVRTC_OPTIONS)

    version = f"nvrtc {nvrtc.version()}"
    first = kc.compile_with_disk_cache(compile_once, text, names, ck.NVRTC_OPTIONS, version, "sm_90",
                                       kc.DiskCache(tmp_path))
    again = kc.compile_with_disk_cache(compile_once, text, names, ck.NVRTC_OPTIONS, version, "sm_90",
                                       kc.DiskCache(tmp_path))
    assert calls == [1] and again == first and first.binary[:4] == b"\x7fELF"


@needs_nvrtc
def test_the_launcher_compiles_with_nvrtc_for_the_devices_architecture(tmp_path):
    """The production path up to the driver: the launcher picks sm_90 for a compute-capability
    9.0 device, NVRTC compiles every program a training step needs (once), the disk cache keeps
    them, and every launch finds its real mangled kernel (on the stand-in device)."""
    import numpy as np

    import gpubp
    from gpubp.ops import kernel_cache as kc
    from gpubp.ops.cuda_launcher import CudaKernels, NvrtcCompiler
    from gpubp.ops.standin import StandInDevice, standin_backend

    class Counting(NvrtcCompiler):
        archs = []

        def compile(self, text, name, arch, name_expressions, options):
            self.archs.append(arch)
            return super().compile(text, name, arch, name_expressions, options)

    device = StandInDevice(name=f"nvrtc-{tmp_path.name}")
    compiler = Counting()
    launcher = CudaKernels(device, compiler, disk=kc.DiskCache(tmp_path))
    with gpubp.use_backend(standin_backend(launcher)):
        net = gpubp.MLP([20, 16, 4], activation="gelu", loss="cross_entropy", seed=0)
    net.train_batch(np.zeros((300, 20), np.float32), np.zeros(300, np.int64), gpubp.Adam())
    assert compiler.archs == ["sm_90"] * len(dense_sources())
    assert device.kernels["bias_grad"] == 2 * 3  # 300 rows: two passes for dC/db of both layers and C
    assert all(name.startswith("_Z") for name in device.loaded)  # real mangled names from NVRTC
    assert len(list(tmp_path.glob("*.bin"))) == len(dense_sources())
