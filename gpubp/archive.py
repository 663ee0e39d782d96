"""A read-only ``.npz`` archive from an untrusted file: checked first, read lazily, within bounds.

``np.load`` trusts a file: it opens whatever the path names (a FIFO blocks it, a device streams
forever), inflates a compressed member whole, and allocates what a member's header declares.
:class:`Archive` instead

* opens regular files only (never a FIFO, a device or a folder, which are refused at once);
* reads the zip directory and every member's ``.npy`` header before any data, and refuses a
  member that is compressed or encrypted, whose dtype is not plain numbers (bool, int, uint,
  float), or whose declared shape and dtype do not account for exactly its stored bytes: a
  member's data therefore lie inside the file, and nothing read from it is larger than the file;
* reads a member's data only when asked, in chunks of :data:`CHUNK` bytes, straight into an
  array (one the caller allocated, if it likes), or streams it into a hash without keeping it.

Every malformed file is an :class:`ArchiveError` (a ``ValueError``) saying what is wrong; the
caller adds the file's name.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

#: Bytes per read of a member's data: the largest temporary a read makes.
CHUNK = 1 << 20
#: The most members an archive may hold (its directory is read whole).
MAX_MEMBERS = 4096
#: The largest ``.npy`` header accepted (NumPy's own limit for untrusted files).
MAX_HEADER = 10_000
_SUFFIX = ".npy"
_LOCAL_HEADER = 30  # bytes of a zip local file header before its name and extra field
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket"}


class ArchiveError(ValueError):
    """The file is not a well-formed, uncompressed ``.npz`` archive of numeric arrays."""


@dataclass(frozen=True)
class Member:
    """One array of the archive, as its header declares it (its data not yet read)."""

    name: str  # the key np.savez was given: the zip name without ``.npy``
    shape: Tuple[int, ...]
    dtype: np.dtype
    offset: int  # bytes of .npy header before the data
    info: zipfile.ZipInfo

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _open_regular(path: str) -> Tuple[Any, int]:
    """(binary file object, size) of the regular file ``path``; ArchiveError for anything else.

    Opened without blocking (a FIFO with no writer would wait forever), then checked with
    fstat on the open descriptor, so the file checked is the file read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
            raise ArchiveError(f"it is {kind}, not a regular file")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _read_header(f: Any) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from the ``.npy`` header at the start of ``f``."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        read = fmt.read_array_header_1_0
    elif version == (2, 0):
        read = fmt.read_array_header_2_0
    else:
        raise ArchiveError(f".npy format version {version} (expected 1.0 or 2.0)")
    try:
        return read(f, max_header_size=MAX_HEADER)
    except TypeError:  # NumPy < 1.24 has no max_header_size (and no limit)
        return read(f)


class Archive:
    """The checked members of the ``.npz`` file at ``path`` (see the module docstring).

    Use as a context manager, or call :meth:`close`. ``members`` maps each array's name to its
    :class:`Member`; :meth:`read` and :meth:`hash_into` read its data.
    """

    def __init__(self, path: str):
        self._file, self.size = _open_regular(path)
        try:
            self._zip = zipfile.ZipFile(self._file)
            self.members: Dict[str, Member] = self._check_members()
        except ArchiveError:
            self.close()
            raise
        except Exception as exc:  # whatever a malformed zip makes the reader raise
            self.close()
            raise ArchiveError(f"not a readable .npz archive ({type(exc).__name__}: {exc})") from None

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        zf = getattr(self, "_zip", None)
        if zf is not None:
            zf.close()
        self._file.close()

    def _check_members(self) -> Dict[str, Member]:
        infos = self._zip.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ArchiveError(f"{len(infos)} members (at most {MAX_MEMBERS} expected)")
        members: Dict[str, Member] = {}
        for info in infos:
            name = info.filename
            if not name.endswith(_SUFFIX):
                raise ArchiveError(f"member {name!r} is not a .npy array")
            key = name[: -len(_SUFFIX)]
            if key in members:
                raise ArchiveError(f"member {name!r} appears twice")
            if info.flag_bits & 0x1:
                raise ArchiveError(f"member {name!r} is encrypted")
            if info.compress_type != zipfile.ZIP_STORED:
                raise ArchiveError(f"member {name!r} is compressed; the arrays must be stored uncompressed (np.savez)")
            if (info.compress_size != info.file_size
                    or info.header_offset + _LOCAL_HEADER + len(info.orig_filename) + info.file_size > self.size):
                raise ArchiveError(f"member {name!r} declares {info.file_size} bytes, more than the file holds")
            with self._zip.open(info) as f:
                shape, fortran, dtype = _read_header(f)
                offset = f.tell()
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in "biuf":
                raise ArchiveError(f"member {name!r} has dtype {dtype}; expected plain numbers (bool, int or float)")
            if fortran and len(shape) > 1:
                raise ArchiveError(f"member {name!r} is stored in Fortran order; expected C order")
            member = Member(key, tuple(int(s) for s in shape), dtype, offset, info)
            if offset + member.nbytes != info.file_size:
                raise ArchiveError(f"member {name!r} declares shape {member.shape} of {dtype} ({member.nbytes} bytes) "
                                   f"but stores {info.file_size - offset} bytes")
            members[key] = member
        return members

    def _chunks(self, member: Member) -> Any:
        """The data of ``member`` in chunks of at most CHUNK bytes (the zip's CRC checked at the end)."""
        try:
            with self._zip.open(member.info) as f:
                f.read(member.offset)
                left = member.nbytes
                while left:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:
                        raise ArchiveError(f"member {member.name!r} ends early")
                    left -= len(chunk)
                    yield chunk
                if f.read(1):
                    raise ArchiveError(f"member {member.name!r} holds more bytes than its header declares")
        except ArchiveError:
            raise
        except Exception as exc:  # a bad CRC, a short file
            raise ArchiveError(f"member {member.name!r} cannot be read ({type(exc).__name__}: {exc})") from None

    def read(self, name: str, out: Optional[np.ndarray] = None) -> np.ndarray:
        """The array ``name`` as stored, read into ``out`` when given (C-contiguous, of the member's
        shape and dtype), else into a new array."""
        member = self.members[name]
        if out is None:
            out = np.empty(member.shape, dtype=member.dtype)
        elif out.shape != member.shape or out.dtype != member.dtype or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous array of shape {member.shape} and dtype {member.dtype}")
        view = memoryview(out.reshape(-1).view(np.uint8))
        pos = 0
        for chunk in self._chunks(member):
            view[pos : pos + len(chunk)] = chunk
            pos += len(chunk)
        return out

    def hash_into(self, name: str, h: Any) -> None:
        """Feed the stored bytes of ``name`` to the hash ``h`` (``h.update``), keeping none of them."""
        for chunk in self._chunks(self.members[name]):
            h.update(chunk)
