"""Compiled kernel programs: compiled once per process, and kept on disk between processes.

Two levels, both generic (any program text, any compiler, any device kind):

* :data:`PROGRAMS`, process-wide and thread-safe: one loaded program per (program text,
  dtype, device, compiler options). Every launcher (every ``CupyOps``, hence every
  ``set_backend``/``use_backend``, test fixture, gradcheck twin or benchmark case) looks its
  programs up here, so each is compiled and loaded once per process and device.
* :class:`DiskCache`: compiled binaries (cubin or PTX) in the user's cache folder, keyed on
  a SHA-256 of (program text, its name expressions, compiler options, compiler version,
  architecture), so a new process on the same machine loads them instead of compiling.
  Entries are written atomically (a temporary file renamed into place); an entry that
  cannot be read or fails its checksum is ignored and rebuilt.

``GPUBP_CACHE_DIR`` names the folder (default ``$XDG_CACHE_HOME/gpubp`` or
``~/.cache/gpubp``); ``GPUBP_DISK_CACHE=0`` (or ``off``, ``false``, ``no``) switches the disk
cache off. Both are read when a program is compiled, not at import.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple

ENV_DIR = "GPUBP_CACHE_DIR"
ENV_DISK = "GPUBP_DISK_CACHE"
_OFF = ("0", "off", "false", "no")
# Bumped when the entry layout changes: older entries then miss (and are rebuilt).
FORMAT = b"gpubp kernel cache 1\n"


@dataclass(frozen=True)
class CompiledProgram:
    """A compiled program: ``binary`` (cubin for ``sm_XX``, PTX for ``compute_XX``), the
    mangled name of every instantiation (``lowered``), and the compiler's log (warnings)."""

    binary: bytes
    arch: str
    lowered: Dict[str, str] = field(repr=False)
    log: str = ""


def default_directory() -> Path:
    """``GPUBP_CACHE_DIR``, else ``$XDG_CACHE_HOME/gpubp``, else ``~/.cache/gpubp``."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpubp"


def disk_cache_enabled() -> bool:
    """False when ``GPUBP_DISK_CACHE`` is ``0``, ``off``, ``false`` or ``no``."""
    return os.environ.get(ENV_DISK, "1").strip().lower() not in _OFF


def disk_key(text: str, name_expressions: Sequence[str], options: Sequence[str], compiler_version: str,
             arch: str) -> str:
    """SHA-256 (hex) of everything a compiled binary depends on."""
    h = hashlib.sha256()
    for part in (text, "\0".join(name_expressions), "\0".join(options), compiler_version, arch):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


class DiskCache:
    """Compiled programs as files ``<key>.bin`` in ``directory``.

    An entry is ``FORMAT``, the length of a JSON header (arch, lowered names, log), the
    header, the binary, and the SHA-256 of header and binary. :meth:`get` returns ``None`` for
    a missing, truncated, corrupted or foreign entry (the caller compiles and :meth:`put`
    replaces it); :meth:`put` never leaves a partial file under the entry's name, and a
    folder that cannot be written only costs the compile next time.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.hits = 0
        self.misses = 0
        self.rejected = 0  # entries present but unreadable
        self.write_errors: List[str] = []

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.bin"

    def get(self, key: str) -> Optional[CompiledProgram]:
        try:
            data = self.path(key).read_bytes()
        except OSError:
            self.misses += 1
            return None
        program = _decode(data)
        if program is None:
            self.rejected += 1
            self.misses += 1
            return None
        self.hits += 1
        return program

    def put(self, key: str, program: CompiledProgram) -> None:
        data = _encode(program)
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".tmp", dir=self.directory)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path(key))
            tmp = None
        except OSError as exc:
            self.write_errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


def _encode(program: CompiledProgram) -> bytes:
    header = json.dumps({"arch": program.arch, "lowered": program.lowered, "log": program.log},
                        sort_keys=True).encode()
    body = header + program.binary
    return FORMAT + len(header).to_bytes(8, "little") + body + hashlib.sha256(body).digest()


def _decode(data: bytes) -> Optional[CompiledProgram]:
    start = len(FORMAT) + 8
    if len(data) < start + 32 or not data.startswith(FORMAT):
        return None
    n = int.from_bytes(data[len(FORMAT):start], "little")
    body, digest = data[start:-32], data[-32:]
    if n > len(body) or hashlib.sha256(body).digest() != digest:
        return None
    try:
        header = json.loads(body[:n].decode())
        lowered = {str(k): str(v) for k, v in header["lowered"].items()}
        return CompiledProgram(body[n:], str(header["arch"]), lowered, str(header.get("log", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def compile_with_disk_cache(compile: Callable[[], CompiledProgram], text: str, name_expressions: Sequence[str],
                            options: Sequence[str], compiler_version: str, arch: str,
                            disk: Optional[DiskCache]) -> CompiledProgram:
    """The program from ``disk`` when it holds it, else ``compile()`` (then stored)."""
    if disk is None:
        return compile()
    key = disk_key(text, name_expressions, options, compiler_version, arch)
    program = disk.get(key)
    if program is None or not set(name_expressions) <= set(program.lowered):
        program = compile()
        disk.put(key, program)
    return program


def default_disk_cache() -> Optional[DiskCache]:
    """The disk cache the environment asks for (``None`` when switched off)."""
    return DiskCache(default_directory() / "kernels") if disk_cache_enabled() else None


class ProgramCache:
    """Loaded programs of this process, one per key, built at most once each.

    ``get(key, build)`` returns the entry for ``key``, calling ``build()`` the first time.
    Thread-safe: two threads asking for the same key wait for one build; different keys
    build in parallel.
    """

    def __init__(self) -> None:
        self._entries: Dict[Hashable, Any] = {}
        self._building: Dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.builds = 0

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        entry = self._entries.get(key)
        if entry is not None:
            return entry
        with self._lock:
            lock = self._building.setdefault(key, threading.Lock())
        with lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = build()
                with self._lock:
                    self._entries[key] = entry
                    self.builds += 1
                    self._building.pop(key, None)
        return entry

    def keys(self) -> List[Hashable]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        """Forget every loaded program (the next launch compiles or reads the disk again)."""
        with self._lock:
            self._entries.clear()


#: The process-wide cache of loaded programs, keyed (program text, dtype, device, options).
PROGRAMS = ProgramCache()


def program_key(text: str, dtype: str, device: Hashable, options: Tuple[str, ...]) -> Tuple[Any, ...]:
    return (text, dtype, device, options)
