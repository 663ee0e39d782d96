"""Markers shared by tests/ and benchmarks/.

``gpu`` marks what touches the GPU: every case parametrised with the ``cupy`` backend (given
here, from the parameter) and the tests marked by hand (NCCL, cross-backend checks, GPU-only
benchmarks). ``python -m gpubp.gpucheck`` runs ``pytest -m gpu``: the GPU-touching part of
the suites and nothing of the CPU-only ones. (The marker is registered in pyproject.toml.)
"""
from __future__ import annotations

from typing import Any, List

import pytest


def pytest_collection_modifyitems(config: Any, items: List[Any]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "cupy":
            item.add_marker(pytest.mark.gpu)
