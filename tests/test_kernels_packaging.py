"""The kernel sources ship inside the wheel and are found by a non-editable install; importing
gpubp compiles nothing."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from gpubp.ops import cuda_kernels as ck

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".benchmarks", ".hypothesis", "results")


def _build_problem():
    try:
        import setuptools  # noqa: F401  (the build backend, used without build isolation)
    except ImportError:
        return "setuptools is not installed (pip install -e '.[test]' brings it)"
    if not (ROOT / "pyproject.toml").is_file():
        return "not a source checkout"
    return None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    problem = _build_problem()
    if problem:
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: an in-tree build/ folder would leak into later builds
    shutil.copytree(ROOT, src, ignore=_IGNORE)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "dist").glob("gpubp-*.whl")
    return path


def test_wheel_contains_the_kernel_sources(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in ("__init__.py", ck.COMMON_HEADER, *ck.SOURCES):
        assert f"gpubp/kernels/{f}" in names
    assert "gpubp/ops/cuda_kernels.py" in names and "gpubp/gpucheck/__main__.py" in names


def _dependency_dirs():
    """The site-packages folders this interpreter imports from (gpubp's dependencies are there)."""
    return [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()]


def test_non_editable_install_finds_the_sources(wheel, tmp_path):
    # a fresh environment that sees no package of the base interpreter: the wheel goes into its
    # own site-packages, and the dependencies (NumPy, tqdm) come from the environment running
    # the tests, appended after it by a .pth file (whose folders' own .pth files, such as an
    # editable install of gpubp, are not read)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the outer interpreter's pip installs into the throwaway environment's site-packages
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                           "--target", site, str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (Path(site) / "dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    code = (
        "import gpubp, sys\n"
        "from gpubp.ops import cuda_kernels as ck\n"
        "print(gpubp.__file__); print(ck.kernel_dir())\n"
        "print(sum(len(ck.program_source(s)) for s in ck.SOURCES))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    module, folder, size = out.stdout.split()
    assert Path(module).is_relative_to(site) and Path(folder) == Path(site) / "gpubp" / "kernels"
    assert int(size) > 10_000


def test_importing_gpubp_compiles_nothing():
    code = ("import sys, gpubp\n"
            "print(any(m in sys.modules for m in ('gpubp.ops.cuda_kernels', 'gpubp.ops.cupy_ops', 'cupy.cublas')))\n"
            "from gpubp.ops.cuda_launcher import CudaKernels\n"
            "from gpubp.ops.kernel_cache import PROGRAMS\n"
            "print(CudaKernels().compiled, PROGRAMS.keys(), PROGRAMS.builds)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, GPUBP_BACKEND="auto"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["False", "[] [] 0"]


def _extras():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def _ctk_parts(requirement: str):
    return set(requirement.split("[", 1)[1].split("]", 1)[0].split(","))


@pytest.mark.parametrize("major", [12, 13])
def test_each_cuda_extra_brings_cupy_and_every_cuda_library_gpubp_loads(major):
    """On a machine with only the driver, `pip install gpubp[cudaNN]` must bring CuPy, the CUDA
    runtime, NVRTC (the kernels) and cuBLAS (the products), all of the same CUDA major."""
    extras = _extras()
    reqs = extras[f"cuda{major}"]
    assert any(r.startswith(f"cupy-cuda{major}x") for r in reqs), reqs
    (ctk,) = [r for r in reqs if r.startswith("cuda-toolkit[")]
    assert _ctk_parts(ctk) >= {"cudart", "nvrtc", "cublas"} and ctk.endswith(f"=={major}.*"), ctk
    (nccl,) = extras[f"nccl{major}"]
    assert nccl.startswith(f"nvidia-nccl-cu{major}")


def test_the_installed_cuda_extra_loads_every_library():
    """Where CuPy came from a CUDA extra, the libraries gpubp loads are found (no GPU needed)."""
    from importlib import metadata

    dists = [d.metadata["Name"] for d in metadata.distributions() if d.metadata["Name"]]
    cupys = [n for n in dists if n.lower().startswith("cupy-cuda")]
    if not cupys:
        pytest.skip("CuPy is not installed (pip install '.[cuda12]' or '.[cuda13]')")
    pathfinder = pytest.importorskip("cuda.pathfinder", reason="CuPy 14 finds its CUDA libraries with cuda-pathfinder")
    missing = {}
    for lib in ("cudart", "nvrtc", "cublas"):
        try:
            pathfinder.load_nvidia_dynamic_lib(lib)
        except Exception as exc:  # DynamicLibNotFoundError and its kin
            missing[lib] = f"{type(exc).__name__}: {exc}"[:200]
    assert not missing, f"{cupys[0]} is installed but these libraries are not found: {missing}"


def test_a_plain_checkout_compiles_its_own_sources_beside_an_installed_gpubp(tmp_path):
    """PYTHONPATH=. python -m gpubp.gpucheck from a copy of the checkout reads that copy's kernels/,
    not those of the gpubp installed (editable) elsewhere, whose finder answers for gpubp.kernels."""
    copy = tmp_path / "checkout"
    shutil.copytree(ROOT / "gpubp", copy / "gpubp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "kernels", copy / "kernels")
    code = "import gpubp; from gpubp.ops import cuda_kernels as ck; print(gpubp.__file__); print(ck.kernel_dir())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=copy,
                         env=dict(os.environ, PYTHONPATH=str(copy)))
    assert out.returncode == 0, out.stderr
    module, folder = out.stdout.split()
    assert Path(module).is_relative_to(copy) and Path(folder) == copy / "kernels"
