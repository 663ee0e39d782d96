"""Checkpoints: weights, layer state, architecture, dtype, optimizer state and RNG state in one ``.npz`` file.

A checkpoint is written atomically: to a temporary file in the target's folder, flushed and
fsync'ed, then renamed over the target, so a crash at any moment leaves the old file or the
new one, never a broken one. Saving over a symbolic link writes the file the link points to,
and an existing file keeps its permissions. The file carries a format name and version and a
SHA-256 checksum of its contents. Arrays are stored as NumPy arrays, so a model saved on one
backend loads on the other.

Loading treats the file as untrusted (:mod:`gpubp.archive`): the metadata are parsed strictly
(no NaN or infinities, no integers beyond 40 digits, at most 1 MiB), checked against the
constructor's rules, and the arrays the metadata call for (their names, shapes and dtypes,
see :func:`_expected_arrays`) are compared with the headers of the arrays stored, all before
any array data is read. The parameters are then read straight into the network's buffer (no
random initialisation), the rest is streamed through the checksum, so loading a network
peaks at about twice its parameters' size (the parameters and their gradient buffer).
Anything malformed is a :class:`~gpubp.errors.CheckpointError` naming the file.

This module is the file format: it writes a network's state (:func:`save`, given anything
with the network's ``params``, ``get_config()`` and shuffling state) and reads it back
verified (:class:`Checkpoint`); :func:`gpubp.persistence.load` builds the network from what it
reads, passing the rule that says which arrays a network's configuration calls for. It never
imports the network module, so the two have no import cycle.

Format version 2 (this one) holds the layer list (the network's config), the flat state buffer
``state`` where the network has state (BatchNorm's running statistics) and every layer's host
state (a Dropout's stream position, the dropout seed); version 1 files (networks of Dense
layers, written before layers existed) load as they always did.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from typing import Any, Callable, Dict, Optional, Tuple, Union

import numpy as np

from . import validation
from .archive import Archive, ArchiveError
from .errors import CheckpointError, OutOfMemoryError

FORMAT = "gpubp-checkpoint"
VERSION = 2
#: The versions this gpubp reads.
READABLE_VERSIONS = (1, 2)
PathLike = Union[str, "os.PathLike[str]"]
#: The largest metadata member accepted.
MAX_META_BYTES = 1 << 20
#: The most digits an integer of the metadata may have (the generator's 128-bit state needs 39).
MAX_INT_DIGITS = 40
_META, _CHECKSUM = "__meta__", "__checksum__"
_STATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_path(path: Any) -> str:
    """``path`` as a non-empty str (from a str, bytes or os.PathLike); a TypeError or ValueError
    for anything else."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike naming the checkpoint file; got {type(path).__name__} {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError("path must name the checkpoint file; got an empty string")
    return path


def _update_digest(h: Any, name: str, dtype: Any, shape: Tuple[int, ...]) -> None:
    h.update(name.encode())
    h.update(str(np.dtype(dtype)).encode())
    h.update(str(tuple(shape)).encode())


def _digest(meta_json: str, arrays: Dict[str, np.ndarray]) -> str:
    """SHA-256 of the metadata and of every array's name, dtype, shape and bytes, by name."""
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        _update_digest(h, name, a.dtype, a.shape)
        h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint")


# ---- saving ------------------------------------------------------------------------------------
def check_save_path(path: Any) -> Tuple[str, Optional[os.stat_result]]:
    """(the file a save of ``path`` writes, its current ``stat`` or None) if a checkpoint can be
    saved there; the error :func:`save` would raise otherwise.

    A symbolic link is followed to the file it names (which is written, the link kept). The
    folder must exist and be writable, and an existing target must be a regular file.
    """
    name = check_path(path)
    target = os.path.realpath(name)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save checkpoint {name!r}: folder {folder!r} does not exist")
    try:
        existing: Optional[os.stat_result] = os.stat(target)
    except FileNotFoundError:
        existing = None
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        raise IsADirectoryError(f"cannot save checkpoint {name!r}: it is a folder")
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        raise ValueError(f"cannot save checkpoint {name!r}: it exists and is not a regular file")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot save checkpoint {name!r}: folder {folder!r} is not writable")
    return target, existing


def _check_optimizer_for(optimizer: Any, net: Any) -> None:
    """``optimizer`` is a gpubp optimizer whose state (if any) belongs to ``net``: buffers of its
    size, from steps of ``net`` itself, not of another network of the same architecture."""
    validation.check_optimizer(optimizer, net)
    if not callable(getattr(optimizer, "state_dict", None)):
        raise TypeError(f"optimizer must be a gpubp optimizer (with state_dict()) or None; got {type(optimizer).__name__}")
    for key, value in getattr(optimizer, "state", {}).items():
        if tuple(value.shape) != tuple(net.params.shape):
            raise ValueError(f"optimizer: its state {key!r} has {value.size} values, for another network; this network "
                             f"has {net.params.size} parameters: save each network with its own optimizer")
    check_owner = getattr(optimizer, "check_owner", None)
    if callable(check_owner):
        check_owner(net)


def save(net: Any, path: PathLike, optimizer: Any = None) -> None:
    """Write ``net`` (and ``optimizer``'s state) to ``path`` atomically (see the module docstring).

    Everything is checked before the file is touched: the path (:func:`check_save_path`) and
    that ``optimizer`` holds state for ``net``. A process killed while saving may leave a
    stray ``.gpubp-*.tmp`` file beside the target, never a broken target; an exception
    (or Ctrl-C) while saving leaves no temporary file.
    """
    target, existing = check_save_path(path)
    if optimizer is not None:
        _check_optimizer_for(optimizer, net)
    arrays: Dict[str, np.ndarray] = {"params": net.backend.to_numpy(net.params)}
    if net.state.size:
        arrays["state"] = net.backend.to_numpy(net.state)
    meta: Dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": net.get_config(),
        "host_state": net.host_state(),
        "rng": net.rng.bit_generator.state,
        "epoch": int(getattr(net, "epoch", 0)),
        "optimizer": None,
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        meta["optimizer"] = {"type": sd["type"], "config": sd["config"], "t": sd["t"], "state": sorted(sd["state"])}
        if sd.get("initial_lr") is not None:  # the base lr of a learning-rate schedule (gpubp.schedules)
            meta["optimizer"]["initial_lr"] = sd["initial_lr"]
        for name, value in sd["state"].items():
            arrays[f"optimizer/{name}"] = value
    meta_json = json.dumps(meta, sort_keys=True, default=_json_default)
    checksum = _digest(meta_json, arrays)
    folder = os.path.dirname(target)
    # a new, exclusive file beside the target, with the mode an ordinary open() gives (the
    # process umask applies), unlike mkstemp's 0600; an existing target's mode is kept
    tmp = os.path.join(folder, f".gpubp-{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            if existing is not None:
                _copy_permissions(f.fileno(), existing)
            np.savez(f, __meta__=np.frombuffer(meta_json.encode(), dtype=np.uint8),
                     __checksum__=np.frombuffer(checksum.encode(), dtype=np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        # the temporary file is removed by name, so an interrupt arriving anywhere after it was
        # created (even before its descriptor was kept) leaves nothing behind; a clash with
        # another file of that name (FileExistsError from O_EXCL) is not ours to remove
        if not isinstance(exc, FileExistsError) and os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def _copy_permissions(fd: int, existing: os.stat_result) -> None:
    """Give the new file the mode (and, where allowed, the owner) of the file it replaces."""
    if hasattr(os, "fchown") and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, existing.st_uid, existing.st_gid)
        except OSError:  # only the owner's group, or root, may do it: the mode is still kept
            pass
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(existing.st_mode))


# ---- reading -----------------------------------------------------------------------------------
def _reject_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS} allowed)")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"{text} overflows to infinity")
    return value


def _parse_meta(text: str) -> Any:
    """The metadata JSON, parsed strictly: NaN, infinities and huge integers refused."""
    return json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int, parse_float=_finite_float)


def _check_count(value: Any, what: str) -> int:
    """A JSON integer in [0, 2^63) (not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{what} = {value!r} is not an integer in [0, 2^63)"[:200])
    return value


#: What a network's configuration calls for: ``describe(config)`` gives (its architecture, an
#: object with ``n_params``, ``sizes`` and ``bias``, not allocated; {array name: (shape, dtype)}),
#: or raises TypeError/ValueError for a configuration its constructor would refuse.
Describe = Callable[[Any], Tuple[Any, Dict[str, Tuple[Tuple[int, ...], np.dtype]]]]


def _expected_arrays(meta: Dict[str, Any], describe: Describe) -> Tuple[Any, Dict[str, Tuple[Tuple[int, ...], np.dtype]]]:
    """(the network's architecture, {array name: (shape, dtype)}) that the metadata call for: the
    network's own arrays (``describe``) and the optimizer's buffers, each shaped like the
    parameters. Raises TypeError/ValueError/KeyError for metadata that the constructor (or the
    optimizer's bookkeeping) would refuse.

    The one place that says which arrays a checkpoint holds: a new kind of state adds its
    entries here (or in ``describe``) and is then checked like the others.
    """
    architecture, arrays = describe(meta["config"])
    arrays = dict(arrays)
    saved = meta["optimizer"]
    if saved is not None:
        if not isinstance(saved, dict) or sorted(k for k in saved if k != "initial_lr") != ["config", "state", "t", "type"]:
            raise ValueError(f"optimizer must hold exactly config, state, t and type (and initial_lr); got {saved!r}"[:300])
        if not isinstance(saved["type"], str) or not isinstance(saved["config"], dict):
            raise TypeError("optimizer type must be a name and its config a mapping")
        _check_count(saved["t"], "optimizer t")
        initial_lr = saved.get("initial_lr")
        if initial_lr is not None and (isinstance(initial_lr, bool) or not isinstance(initial_lr, (int, float))
                                       or not initial_lr > 0):
            raise ValueError(f"optimizer initial_lr = {initial_lr!r} is not a learning rate (a number > 0)"[:200])
        names = saved["state"]
        if (not isinstance(names, list) or not all(isinstance(k, str) and _STATE_NAME.fullmatch(k) for k in names)
                or len(set(names)) != len(names)):
            raise ValueError(f"optimizer state must be a list of distinct buffer names; got {names!r}"[:300])
        arrays.update({f"optimizer/{k}": arrays["params"] for k in names})
    return architecture, arrays


class Checkpoint:
    """An open checkpoint file whose metadata are parsed and agree with its arrays' headers.

    Use as a context manager. Nothing but the metadata has been read yet: :meth:`read` reads
    an array, :meth:`verify` checks the checksum over everything.
    """

    def __init__(self, path: PathLike, describe: Describe):
        self.name = check_path(path)
        self._describe = describe
        try:
            self.archive = Archive(self.name)
        except FileNotFoundError:
            raise FileNotFoundError(f"checkpoint {self.name!r} does not exist") from None
        except ArchiveError as exc:
            raise CheckpointError(f"{self.name!r} is not a readable gpubp checkpoint ({exc})") from None
        try:
            self._read_meta()
        except BaseException:
            self.archive.close()
            raise

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.archive.close()

    def _error(self, what: str, exc: Optional[BaseException] = None) -> CheckpointError:
        detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
        return CheckpointError(f"{self.name!r}: {what}{detail}"[:1000])

    def _read_meta(self) -> None:
        members = self.archive.members
        if _META not in members or _CHECKSUM not in members:
            raise CheckpointError(f"{self.name!r} is an .npz file but not a gpubp checkpoint (no metadata)")
        for key, limit in ((_META, MAX_META_BYTES), (_CHECKSUM, 64)):
            m = members[key]
            if m.dtype != np.uint8 or len(m.shape) != 1 or m.shape[0] > limit:
                raise self._error(f"member {key} must be at most {limit} bytes of uint8; got shape {m.shape} of {m.dtype}")
        try:
            self.meta_json = self.archive.read(_META).tobytes().decode()
            self.checksum = self.archive.read(_CHECKSUM).tobytes().decode("ascii")
            meta = _parse_meta(self.meta_json)
        except ArchiveError as exc:
            raise self._error("the metadata cannot be read", exc) from None
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise self._error("checkpoint metadata is corrupted", exc) from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CheckpointError(f"{self.name!r} is not a gpubp checkpoint "
                                  f"(format {meta.get('format') if isinstance(meta, dict) else None!r})"[:300])
        if meta.get("version") not in READABLE_VERSIONS:
            raise CheckpointError(f"{self.name!r} has checkpoint format version {meta.get('version')!r}; "
                                  f"this gpubp reads versions {', '.join(map(str, READABLE_VERSIONS))}"[:300])
        self.meta = meta
        try:
            self.config = dict(meta["config"])
            self.architecture, expected = _expected_arrays(meta, self._describe)
            self.epoch = _check_count(meta["epoch"], "epoch")
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = meta["rng"]
            self.host_state = meta.get("host_state", {})  # version 1: no layers with host state
            if not isinstance(self.host_state, dict):
                raise TypeError(f"host_state must be a mapping; got {self.host_state!r}"[:200])
        except (KeyError, TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise self._error("the metadata do not describe a valid network", exc) from None
        stored = {k: (m.shape, m.dtype) for k, m in members.items() if k not in (_META, _CHECKSUM)}
        for key in list(expected) + sorted(set(stored) - set(expected)):  # the network's arrays first
            if key not in stored:
                raise self._error(f"array {key!r}, which the metadata call for, is missing")
            if key not in expected:
                raise self._error(f"array {key!r} is not one the metadata call for")
            if stored[key] != expected[key]:
                (shape, dtype), (want, want_dtype) = stored[key], expected[key]
                raise self._error(f"array {key!r} has shape {shape} and dtype {dtype}, but the metadata (sizes "
                                  f"{list(self.architecture.sizes)}, bias={self.architecture.bias}) call for shape "
                                  f"{want} and dtype {want_dtype}")

    @property
    def n_params(self) -> int:
        return int(self.architecture.n_params)

    def read(self, key: str) -> np.ndarray:
        """The array ``key``, in a new buffer (an out-of-memory error says which file needed it)."""
        member = self.archive.members[key]
        try:
            out = np.empty(member.shape, dtype=member.dtype)
        except MemoryError as exc:  # host memory, whatever the backend
            raise OutOfMemoryError(f"out of host memory loading {self.name!r}: its array {key!r} needs "
                                   f"{member.nbytes:,} bytes [{type(exc).__name__}: {exc}]") from exc
        try:
            return self.archive.read(key, out=out)
        except ArchiveError as exc:
            raise self._error("the file is damaged", exc) from None

    def verify(self, loaded: Dict[str, np.ndarray]) -> None:
        """Check the checksum over the metadata and every array (``loaded`` ones from memory,
        the others streamed from the file)."""
        h = hashlib.sha256(self.meta_json.encode())
        members = self.archive.members
        try:
            for key in sorted(k for k in members if k not in (_META, _CHECKSUM)):
                m = members[key]
                _update_digest(h, key, m.dtype, m.shape)
                if key in loaded:
                    h.update(loaded[key].reshape(-1).view(np.uint8))
                else:
                    self.archive.hash_into(key, h)
        except ArchiveError as exc:
            raise self._error("the file is damaged", exc) from None
        if h.hexdigest() != self.checksum:
            raise CheckpointError(f"{self.name!r} is corrupted: its checksum does not match its contents")

    # ---- the optimizer -------------------------------------------------------------------------
    @property
    def optimizer(self) -> Optional[Dict[str, Any]]:
        """The saved optimizer's type, config, step count and state names, or None."""
        return self.meta["optimizer"]

    def check_optimizer(self, optimizer: Any, n_params: int) -> None:
        """Raise unless the saved state can go into ``optimizer`` (of a network of ``n_params``)."""
        if not callable(getattr(optimizer, "load_state_dict", None)):
            raise TypeError(f"optimizer must be a gpubp optimizer (with load_state_dict()); got {type(optimizer).__name__}")
        saved = self.optimizer
        if saved is None:
            raise CheckpointError(f"{self.name!r} holds no optimizer state")
        if saved["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{self.name!r} holds {saved['type']} state, not {type(optimizer).__name__}"[:300])
        if n_params != self.n_params:
            raise CheckpointError(f"{self.name!r}: the optimizer state is for {self.n_params} parameters; "
                                  f"the network has {n_params}")
        missing = set(getattr(optimizer, "state_names", ())) - set(saved["state"])
        if saved["t"] > 0 and missing:  # it would restart them from zeros: not the saved run
            raise CheckpointError(f"{self.name!r}: the saved {saved['type']} state, after {saved['t']} steps, lacks "
                                  f"the buffers {sorted(missing)} this optimizer keeps")

    def optimizer_state(self) -> Dict[str, Any]:
        """{"t": ..., "state": {name: array}} of the saved optimizer, read from the file."""
        saved = self.optimizer
        return {"t": saved["t"], "state": {k: self.read(f"optimizer/{k}") for k in saved["state"]},
                "initial_lr": saved.get("initial_lr")}
