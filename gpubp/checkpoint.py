"""Checkpoints: weights, layer state, architecture, dtype, optimizer state and RNG state in one ``.npz`` file.

A checkpoint is written atomically: to a temporary file in the target's folder, flushed and
fsync'ed, then renamed over the target, so a crash at any moment leaves the old file or the
new one, never a broken one. It carries a format name and version and a SHA-256 checksum of
its contents; a truncated, corrupted or foreign file is refused with a
:class:`~gpubp.errors.CheckpointError` naming the file. Arrays are stored as NumPy arrays, so
a model saved on one backend loads on the other.

This module is the file format: it writes a network's state (:func:`save`, given anything
with the network's ``params``, ``state``, ``get_config()``, host state and shuffling state) and reads it back
verified (:func:`read`); :func:`gpubp.network.load` builds the network from what it reads.
It never imports the network module, so the two have no import cycle.

Format version 2 (this one) holds the layer list (the network's config), the flat state buffer
(BatchNorm's running statistics) and every layer's host state (a Dropout's stream position,
the dropout seed); version 1 files (networks of Dense layers, written before layers existed)
load as they always did.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import secrets
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np

from .errors import CheckpointError

if TYPE_CHECKING:
    from .optim import Optimizer

FORMAT = "gpubp-checkpoint"
VERSION = 2
#: The versions this gpubp reads.
READABLE_VERSIONS = (1, 2)
PathLike = Union[str, "os.PathLike[str]"]



def check_path(path: Any) -> str:
    """``path`` as a str (from a str, bytes or os.PathLike); a TypeError for anything else."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike naming the checkpoint file; got {type(path).__name__} {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def _digest(meta_json: str, arrays: Dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(meta_json.encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in a checkpoint")


def save(net: Any, path: PathLike, optimizer: Any = None) -> None:
    """Write ``net`` (and ``optimizer``'s state) to ``path`` atomically (see the module docstring).

    A process killed while saving may leave a stray ``.gpubp-*.tmp`` file beside the target,
    never a broken target.
    """
    path = check_path(path)
    if optimizer is not None and not callable(getattr(optimizer, "state_dict", None)):
        raise TypeError(f"optimizer must be a gpubp optimizer (with state_dict()) or None; got {type(optimizer).__name__}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot save checkpoint {path!r}: folder {folder!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"cannot save checkpoint {path!r}: it is a folder")
    arrays: Dict[str, np.ndarray] = {"params": net.backend.to_numpy(net.params),
                                     "state": net.backend.to_numpy(net.state)}
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
        meta["optimizer"] = {"type": sd["type"], "config": sd["config"], "t": sd["t"], "state": sorted(sd["state"]),
                             "initial_lr": sd.get("initial_lr")}
        for name, value in sd["state"].items():
            arrays[f"optimizer/{name}"] = value
    meta_json = json.dumps(meta, sort_keys=True, default=_json_default)
    checksum = _digest(meta_json, arrays)
    # a new, exclusive file beside the target, with the mode an ordinary open() gives (the
    # process umask applies), unlike mkstemp's 0600
    tmp = os.path.join(folder, f".gpubp-{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, __meta__=np.frombuffer(meta_json.encode(), dtype=np.uint8),
                     __checksum__=np.frombuffer(checksum.encode(), dtype=np.uint8), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
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


def read(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, np.ndarray]]:
    """The verified (meta, arrays) of a checkpoint; CheckpointError for anything else."""
    path = check_path(path)
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint {path!r} does not exist") from None
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:  # the file is untrusted: any failure to parse it means "not readable"
        raise CheckpointError(f"{path!r} is not a readable gpubp checkpoint (truncated or not an .npz file: "
                              f"{type(exc).__name__}: {exc})") from None
    if "__meta__" not in data or "__checksum__" not in data:
        raise CheckpointError(f"{path!r} is an .npz file but not a gpubp checkpoint (no metadata)")
    try:
        meta_json = data.pop("__meta__").tobytes().decode()
        checksum = data.pop("__checksum__").tobytes().decode()
        meta = json.loads(meta_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path!r}: checkpoint metadata is corrupted ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not a gpubp checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"{path!r} has checkpoint format version {meta.get('version')!r}; this gpubp reads "
                              f"versions {', '.join(map(str, READABLE_VERSIONS))}")
    if _digest(meta_json, data) != checksum:
        raise CheckpointError(f"{path!r} is corrupted: its checksum does not match its contents")
    return meta, data


def restore_optimizer(optimizer: Any, meta: Dict[str, Any], arrays: Dict[str, np.ndarray], net: Any, path: PathLike,
                      dry_run: bool = False) -> None:
    """Load the saved optimizer state into ``optimizer`` (only check that it can with ``dry_run``)."""
    name = check_path(path)
    if not callable(getattr(optimizer, "load_state_dict", None)):
        raise TypeError(f"optimizer must be a gpubp optimizer (with load_state_dict()); got {type(optimizer).__name__}")
    saved = meta.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{name!r} holds no optimizer state")
    try:
        if saved["type"] != type(optimizer).__name__:
            raise CheckpointError(f"{name!r} holds {saved['type']} state, not {type(optimizer).__name__}")
        state = {k: arrays[f"optimizer/{k}"] for k in saved["state"]}
        t = int(saved["t"])
        initial_lr = saved.get("initial_lr")
        if initial_lr is not None and not (isinstance(initial_lr, (int, float)) and float(initial_lr) > 0.0
                                           and math.isfinite(float(initial_lr))):
            raise ValueError(f"initial_lr {initial_lr!r} is not a learning rate")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name!r}: the optimizer state is corrupted ({type(exc).__name__}: {exc})") from None
    for k, v in state.items():
        if v.shape != (net.n_params,):
            raise CheckpointError(f"{name!r}: optimizer buffer {k!r} has shape {v.shape}; the network has {net.n_params} parameters")
    if not dry_run:
        optimizer.load_state_dict({"t": t, "state": state, "initial_lr": initial_lr}, net)


def load_optimizer(path: PathLike, net: Any) -> Optional["Optimizer"]:
    """A new optimizer of the saved type and settings with its saved state, or None if none was saved."""
    from .optim import OPTIMIZERS

    meta, arrays = read(path)
    saved = meta.get("optimizer")
    if saved is None:
        return None
    try:
        cls = OPTIMIZERS[saved["type"].lower()]
        cfg = dict(saved["config"])
        if "betas" in cfg:
            cfg["betas"] = tuple(cfg["betas"])
        opt = cls(**cfg)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{check_path(path)!r}: the optimizer settings are corrupted ({type(exc).__name__}: {exc})") from None
    restore_optimizer(opt, meta, arrays, net, path)
    return opt
