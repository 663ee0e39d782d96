"""Loading checkpoints from untrusted files: every malformed file is a CheckpointError naming it,
refused before its arrays are read (so a forged file cannot make gpubp allocate what it
declares), and a valid checkpoint loads with no random initialisation at about twice its
parameters' size."""
from __future__ import annotations

import io
import json
import os
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="these tests need hypothesis (the test extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpubp  # noqa: E402
from gpubp import checkpoint, parameters  # noqa: E402
from gpubp.network import MLP  # noqa: E402

pytestmark = pytest.mark.timeout(120)
MiB = 1 << 20


@pytest.fixture()
def saved(tmp_path):
    """A small checkpoint with Adam state (numpy backend): (path, members, meta)."""
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([6, 8, 3], activation="tanh", loss="cross_entropy", seed=4)
        opt = gpubp.Adam(1e-2)
        rng = np.random.default_rng(0)
        net.fit(rng.normal(size=(40, 6)), rng.integers(0, 3, 40), epochs=2, batch_size=8, optimizer=opt, progress=False)
        path = tmp_path / "good.npz"
        net.save(path, optimizer=opt)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    return path, members, json.loads(members["__meta__"].tobytes().decode())


def _forge(path, members, meta=None, meta_json=None, checksum=True, writer=np.savez):
    """Write a checkpoint with the given members and metadata and a checksum that matches them:
    a deliberate forgery, which the checksum cannot catch (only validation can)."""
    members = dict(members)
    text = meta_json if meta_json is not None else json.dumps(meta)
    members["__meta__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    arrays = {k: v for k, v in members.items() if k not in ("__meta__", "__checksum__")}
    if checksum:
        digest = checkpoint._digest(text, arrays)
        members["__checksum__"] = np.frombuffer(digest.encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        writer(f, **members)
    return path


def _refused(path, *fragments, load=gpubp.load):
    with pytest.raises(gpubp.CheckpointError) as info:
        with gpubp.use_backend("numpy"):
            load(path)
    assert str(path) in str(info.value), f"the error must name the file: {info.value}"
    for fragment in fragments:
        assert fragment in str(info.value), info.value
    return info.value


def _peak(call):
    """(result, peak bytes traced) of call()."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


# ---- forged sizes never allocate what they declare -----------------------------------------------
@pytest.mark.parametrize("sizes", [[8000, 8000, 1], [10**10, 1], [2**62, 2]], ids=["8000x8000", "1e10", "2^62"])
def test_forged_sizes_are_refused_before_anything_is_allocated(saved, tmp_path, sizes):
    _, members, meta = saved
    meta["config"]["sizes"] = sizes
    meta["config"]["activation"] = ["tanh"] * (len(sizes) - 2)
    path = _forge(tmp_path / "forged.npz", members, meta)
    err, peak = _peak(lambda: _refused(path, "params"))
    assert peak < 2 * MiB, f"refusing a forged file allocated {peak} bytes"
    assert "metadata" in str(err)


def test_forged_array_header_cannot_declare_more_than_the_file_holds(saved, tmp_path):
    """The params header declares the forged architecture's 64 million parameters while the
    file stores the original 83: refused from the headers, nothing allocated."""
    _, members, meta = saved
    meta["config"]["sizes"] = [8000, 8000, 1]
    meta["config"]["activation"] = ["tanh"]
    meta["optimizer"] = None
    n = 8000 * 8000 + 8000 + 8000 + 1
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
    params = buf.getvalue() + members["params"].tobytes()
    path = _forge(tmp_path / "forged.npz", {}, meta)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("params.npy", params)
    _, peak = _peak(lambda: _refused(path, "params"))
    assert peak < 2 * MiB


def test_compressed_members_are_refused_without_inflating_them(saved, tmp_path):
    """A 50 MB parameter buffer of zeros compresses to ~50 kB: refused as compressed, not inflated."""
    _, members, meta = saved
    meta["config"]["sizes"] = [3000, 4000, 1]
    meta["config"]["activation"] = ["tanh"]
    meta["optimizer"] = None
    n = 3000 * 4000 + 4000 + 4000 + 1
    forged = {"params": np.zeros(n, dtype=np.float32)}
    path = _forge(tmp_path / "bomb.npz", forged, meta, writer=np.savez_compressed)
    assert path.stat().st_size < 1 * MiB
    _, peak = _peak(lambda: _refused(path, "compressed"))
    assert peak < 2 * MiB


# ---- the table of malformed files ----------------------------------------------------------------
def _nested(depth):
    return "[" * depth + "]" * depth


def _meta_change(**changes):
    def change(meta):
        for dotted, value in changes.items():
            *parents, leaf = dotted.split(".")
            d = meta
            for p in parents:
                d = d[p]
            d[leaf] = value
        return meta
    return change


def _replace_json(old, new):
    return lambda text: text.replace(old, new, 1)


MALFORMED_META = [
    ("nested JSON", None, lambda text: '{"format": "gpubp-checkpoint", "version": 1, "config": ' + _nested(100_000) + "}"),
    ("NaN", None, _replace_json('"epoch": 2', '"epoch": NaN')),
    ("Infinity", None, _replace_json('"epoch": 2', '"epoch": Infinity')),
    ("float overflowing to inf", None, _replace_json('"epoch": 2', '"epoch": 1e999')),
    ("huge integer", None, _replace_json('"epoch": 2', '"epoch": 1' + "0" * 5000)),
    ("huge size", None, _replace_json('"sizes": [6, 8, 3]', '"sizes": [6, 1' + "0" * 60 + ", 3]")),
    ("learning rate NaN", None, _replace_json('"lr": 0.01', '"lr": NaN')),
    ("not UTF-8", None, lambda text: text.replace('"format"', '"form\udcff"')),
    ("metadata a list", None, lambda text: "[1, 2, 3]"),
    ("config a list", _meta_change(config=[6, 8, 3]), None),
    ("config missing a key", lambda m: (m["config"].pop("bias"), m)[1], None),
    ("config with an extra key", _meta_change(**{"config.extra": 1}), None),
    ("sizes a string", _meta_change(**{"config.sizes": "[6, 8, 3]"}), None),
    ("sizes nested", _meta_change(**{"config.sizes": [[6], [8], [3]]}), None),
    ("size zero", _meta_change(**{"config.sizes": [6, 0, 3]}), None),
    ("size a bool", _meta_change(**{"config.sizes": [6, True, 3]}), None),
    ("size a float", _meta_change(**{"config.sizes": [6, 8.0, 3]}), None),
    ("activation unknown", _meta_change(**{"config.activation": ["nope"]}), None),
    ("activation a number", _meta_change(**{"config.activation": 3}), None),
    ("dtype float16", _meta_change(**{"config.dtype": "float16"}), None),
    ("dtype a list", _meta_change(**{"config.dtype": ["float32"]}), None),
    ("dtype of another network", _meta_change(**{"config.dtype": "float64"}), None),
    ("bias a string", _meta_change(**{"config.bias": "yes"}), None),
    ("seed negative", _meta_change(**{"config.seed": -4}), None),
    ("loss unknown", _meta_change(**{"config.loss": "hinge"}), None),
    ("epoch negative", _meta_change(epoch=-1), None),
    ("epoch a bool", _meta_change(epoch=True), None),
    ("epoch a float", _meta_change(epoch=2.5), None),
    ("epoch a string", _meta_change(epoch="2"), None),
    ("epoch missing", lambda m: (m.pop("epoch"), m)[1], None),
    ("rng a number", _meta_change(rng=5), None),
    ("rng of another generator", _meta_change(**{"rng.bit_generator": "MT19937"}), None),
    ("rng state a string", _meta_change(**{"rng.state": "abc"}), None),
    ("optimizer a string", _meta_change(optimizer="Adam"), None),
    ("optimizer state a string", _meta_change(**{"optimizer.state": "mv"}), None),
    ("optimizer state names repeated", _meta_change(**{"optimizer.state": ["m", "m"]}), None),
    ("optimizer state path", _meta_change(**{"optimizer.state": ["../m"]}), None),
    ("optimizer t negative", _meta_change(**{"optimizer.t": -1}), None),
    ("optimizer t a float", _meta_change(**{"optimizer.t": 1.5}), None),
    ("optimizer config a list", _meta_change(**{"optimizer.config": [1]}), None),
]


@pytest.mark.parametrize("case,change_meta,change_text", MALFORMED_META, ids=[c[0] for c in MALFORMED_META])
def test_malformed_metadata_is_a_checkpoint_error(saved, tmp_path, case, change_meta, change_text):
    _, members, meta = saved
    if change_meta is not None:
        text = json.dumps(change_meta(meta))
    else:
        text = change_text(json.dumps(meta))
        assert text != json.dumps(meta), "the case changed nothing"
    if case == "not UTF-8":
        path = tmp_path / "bad.npz"
        raw = text.encode("utf-8", "surrogateescape")
        members = dict(members, __meta__=np.frombuffer(raw, dtype=np.uint8))
        with open(path, "wb") as f:
            np.savez(f, **members)
    else:
        path = _forge(tmp_path / "bad.npz", members, meta_json=text)
    _refused(path)
    _refused(path, load=lambda p: gpubp.load_optimizer(p, gpubp.MLP([6, 8, 3], activation="tanh",
                                                                     loss="cross_entropy", seed=0)))


def _member_change(**changes):
    return lambda members: dict(members, **changes)


def _without(name):
    return lambda members: {k: v for k, v in members.items() if k != name}


MALFORMED_ARRAYS = [
    ("params missing", _without("params"), "missing"),
    ("optimizer buffer missing", _without("optimizer/m"), "missing"),
    ("an extra array", lambda m: dict(m, extra=np.zeros(3)), "extra"),
    ("params of strings", lambda m: dict(m, params=m["params"].astype(str)), "dtype"),
    ("params of float64", lambda m: dict(m, params=m["params"].astype(np.float64)), "dtype"),
    ("params big-endian", lambda m: dict(m, params=m["params"].astype(">f4")), "dtype"),
    ("params 2-D", lambda m: dict(m, params=m["params"][:, None]), "shape"),
    ("params one short", lambda m: dict(m, params=m["params"][:-1]), "shape"),
    ("params Fortran order", lambda m: dict(m, params=np.asfortranarray(np.stack([m["params"]] * 2, axis=1))),
     "Fortran"),
    ("params a structured array", lambda m: dict(m, params=np.zeros(m["params"].size, dtype=[("a", "<f4")])), "dtype"),
    ("optimizer buffer of another size", lambda m: dict(m, **{"optimizer/v": m["optimizer/v"][:5]}), "shape"),
    ("metadata as text", lambda m: dict(m, __meta__=np.array([m["__meta__"].tobytes().decode()])), "__meta__"),
    ("checksum as floats", lambda m: dict(m, __checksum__=np.zeros(64)), "__checksum__"),
    ("metadata too large", lambda m: dict(m, __meta__=np.zeros(checkpoint.MAX_META_BYTES + 1, dtype=np.uint8)),
     "__meta__"),
]


@pytest.mark.parametrize("case,change,fragment", MALFORMED_ARRAYS, ids=[c[0] for c in MALFORMED_ARRAYS])
def test_arrays_that_disagree_with_the_metadata_are_refused(saved, tmp_path, case, change, fragment):
    _, members, meta = saved
    changed = change(members)
    if "__meta__" in fragment or "__checksum__" in fragment:
        path = tmp_path / "bad.npz"
        with open(path, "wb") as f:
            np.savez(f, **changed)
    else:
        path = _forge(tmp_path / "bad.npz", changed, meta)
    _refused(path, fragment)


def test_object_arrays_are_refused_without_unpickling(saved, tmp_path):
    _, members, meta = saved
    path = tmp_path / "pickle.npz"
    members = dict(members, params=np.array([{"a": 1}] * 3, dtype=object))
    with open(path, "wb") as f:
        np.savez(f, **members)
    _refused(path, "dtype object")


def test_duplicate_and_foreign_members_are_refused(saved, tmp_path):
    path, members, _ = saved
    dup = tmp_path / "dup.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(dup, "w") as out, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is told to write
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("params.npy", src.read("params.npy"))
    _refused(dup, "twice")
    foreign = tmp_path / "foreign.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(foreign, "w") as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        out.writestr("README.txt", "hello")
    _refused(foreign, "README.txt")


def test_fifo_device_and_folder_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)  # opening it for reading the usual way would wait for a writer forever
    _refused(fifo, "FIFO")
    _refused(tmp_path, "folder")
    if os.path.exists("/dev/zero"):  # endless: reading it whole would never finish
        with pytest.raises(gpubp.CheckpointError, match="/dev/zero.*device"):
            gpubp.load("/dev/zero")


def test_a_corrupted_optimizer_type_is_refused_by_load_optimizer(saved, tmp_path):
    _, members, meta = saved
    for kind, value in (("type", "RMSprop"), ("type", "__class__"), ("config", {"lr": -1.0}), ("config", {"x": 1})):
        forged = json.loads(json.dumps(meta))
        forged["optimizer"][kind] = value
        path = _forge(tmp_path / f"opt-{kind}.npz", members, forged)
        _refused(path, "optimizer", load=lambda p: gpubp.load_optimizer(p, gpubp.load(p)))


# ---- valid checkpoints: no random initialisation, bounded memory --------------------------------
def test_load_never_initialises_randomly(saved, monkeypatch):
    path, members, _ = saved

    def refuse(*args):
        raise AssertionError("load drew a random initialisation")

    monkeypatch.setattr(parameters, "initialise", refuse)
    with gpubp.use_backend("numpy"):
        net = gpubp.load(path)
    np.testing.assert_array_equal(net.params, members["params"])


def test_load_peaks_at_about_twice_the_parameters(tmp_path):
    """A 1.6-million-parameter network saved with Adam (file: 3 x 6.4 MB): loading the network
    holds its parameters and their gradient buffer, and little else."""
    with gpubp.use_backend("numpy"):
        net = gpubp.MLP([1000, 1600, 2], seed=0)
        opt = gpubp.Adam()
        opt.step(net)
        path = tmp_path / "big.npz"
        net.save(path, optimizer=opt)
        size = net.params.nbytes
        back, peak = _peak(lambda: gpubp.load(path))
    assert back.params.tobytes() == net.params.tobytes()
    assert peak <= 2 * size + 2 * MiB, f"loading peaked at {peak / size:.2f} x the parameters' {size} bytes"


def test_a_checkpoint_too_large_for_memory_is_an_out_of_memory_error(saved, monkeypatch):
    path, members, _ = saved
    real = np.empty

    def empty(shape, *args, **kwargs):
        if tuple(np.atleast_1d(shape)) == members["params"].shape:
            raise MemoryError("cannot allocate")
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", empty)
    with pytest.raises(gpubp.OutOfMemoryError, match=r"host memory loading .*'params' needs 332 bytes"):
        gpubp.load(path)


def test_load_with_an_optimizer_changes_nothing_when_refused(saved, tmp_path):
    _, members, meta = saved
    meta["epoch"] = -3
    path = _forge(tmp_path / "bad.npz", members, meta)
    opt = gpubp.Adam()
    with pytest.raises(gpubp.CheckpointError):
        gpubp.load(path, optimizer=opt)
    assert opt.t == 0 and opt.state == {}


def test_forged_but_valid_checkpoint_still_needs_a_matching_checksum(saved, tmp_path):
    _, members, meta = saved
    members = {k: v for k, v in members.items() if k != "__checksum__"}
    path = _forge(tmp_path / "nochecksum.npz", members, meta, checksum=False)
    _refused(path, "not a gpubp checkpoint")
    members = dict(members, __checksum__=np.frombuffer(b"0" * 64, dtype=np.uint8))
    path = _forge(tmp_path / "wrong.npz", members, meta, checksum=False)
    _refused(path, "checksum")


def test_bytes_io_is_not_a_path(saved):
    path, _, _ = saved
    with pytest.raises(TypeError, match="path"):
        gpubp.load(io.BytesIO(path.read_bytes()))


# ---- property: any change to the metadata loads exactly or is a CheckpointError -----------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from([0, 1, -1, 2**63, 10**39, "float32", "relu", "sse", "Adam", [6, 8, 3]]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8)
RAW_VALUES = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "1" + "0" * 45, "[" * 3000 + "]" * 3000,
                              '"\\ud800"', "true"])


def _paths(value, prefix=()):
    """Every path (tuple of keys and indices) into a JSON value, containers included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    value = list(value) if isinstance(value, list) else dict(value)
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_metadata_change_loads_exactly_or_is_a_checkpoint_error(saved, tmp_path, data):
    path0, members, meta = saved
    where = data.draw(st.sampled_from(sorted(_paths(meta), key=repr)), label="path")
    if data.draw(st.booleans(), label="raw JSON text"):
        marker = "\u2603MARK\u2603"
        text = json.dumps(_replace(meta, where, marker)).replace(json.dumps(marker), data.draw(RAW_VALUES), 1)
    else:
        text = json.dumps(_replace(meta, where, data.draw(JSON_VALUES, label="value")))
    path = _forge(tmp_path / "mutated.npz", members, meta_json=text)
    with gpubp.use_backend("numpy"):
        for load in (gpubp.load, lambda p: gpubp.load_optimizer(p, gpubp.load(path0))):
            try:
                result, peak = _peak(lambda load=load: load(path))
            except gpubp.CheckpointError as exc:
                assert str(path) in str(exc)
                continue
            assert peak < 4 * MiB
            if isinstance(result, MLP):  # a change the rules allow (a seed, an activation name...)
                config = json.loads(text)["config"]
                assert result.get_config() == gpubp.MLP(**config).get_config()  # as the constructor reads it
                np.testing.assert_array_equal(result.params, members["params"])
