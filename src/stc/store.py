"""On-disk activation store: one memory-mapped ``.npy`` per (representation, layer, pooling), plus JSON metadata.

Extraction writes shards (contiguous slices of the texts, each one safetensors file written atomically), so an
interrupted run resumes at the first missing shard and several processes can each take a slice
(``shard=(i, n)`` takes every shard j with j % n == i). When every shard is there, they are merged into the final
arrays and ``meta.json`` is written last: its presence means the store is complete. The directory name is a hash of
model weights, settings and texts, so the same run again finds and reuses it.

Any number of writers (processes, Ray actors) may work on one store at once. Each shard is claimed with an flock
before it is extracted, so two writers never extract the same shard and a dead writer's claim vanishes with it;
writers hold the store lock (``store.lock``) shared, and the merge holds it exclusive, so no shard is removed under
a writer's feet and whatever a killed merger left behind is cleared before the next merge.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from ._files import atomic_path, atomic_write_text, cache_root
from .backbone import Backbone
from .extract import all_keys, extract_features, parse_key

__all__ = ["ExtractionSettings", "ActivationStore", "build_store", "store_keys", "extract_shard", "find_stored",
           "texts_hash", "store_lock", "ShardEngine", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_SHARD_BYTES = 256 * 2**20  # per-shard accumulator budget: memory stays flat whatever N is
# np.load parses each .npy header with ast.literal_eval, which CPython 3.11 does not make safe across threads (the
# probes load side by side on threads): seen as "SystemError: AST constructor recursion depth mismatch" in a test
# run. Opening an array (header + memory map, no data read) is cheap, so it is done one thread at a time.
_OPEN_LOCK = threading.Lock()
_LOCK_NAME = "store.lock"


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything besides the model and the texts that decides the stored values."""

    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    max_length: int | None = None
    windows: bool = False
    window_overlap: int = 64
    dtype: str = "float32"  # of the stored arrays: float32, or float16 where no value overflows
    pairs: bool = False  # the inputs are text pairs (a, b), encoded as the tokenizer encodes pairs

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"store dtype must be 'float32' or 'float16', got {self.dtype!r}")


#: Marks a text pair in ``texts_hash`` (no text's byte length is this large).
_PAIR_MARK = (2 ** 64 - 1).to_bytes(8, "little")


def texts_hash(texts: Sequence[str | tuple[str, str]]) -> str:
    """sha256 over the texts, each length-prefixed; a text pair is marked and both its texts hashed in order, so
    (a, b), (b, a) and the text "a b" are three different inputs."""
    digest = hashlib.sha256()
    for text in texts:
        parts = text if isinstance(text, tuple) else (text,)
        if isinstance(text, tuple):
            digest.update(_PAIR_MARK)
        for part in parts:
            encoded = part.encode("utf-8", "surrogatepass")
            digest.update(len(encoded).to_bytes(8, "little"))
            digest.update(encoded)
    return digest.hexdigest()


class ActivationStore:
    """A complete store on disk; reads one array, or selected columns of it, at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.exists():
            raise ValueError(f"{self.path} is not a complete activation store (no meta.json)")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: store format {self.meta.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}; delete it to extract again")

    @property
    def keys(self) -> list[str]:
        return list(self.meta["arrays"])

    @property
    def n_texts(self) -> int:
        return int(self.meta["n_texts"])

    def dim(self, key: str) -> int:
        return int(self.meta["arrays"][key]["dim"])

    def load(self, key: str, columns: np.ndarray | None = None, rows: np.ndarray | None = None) -> np.ndarray:
        """One array as float32 (n_texts, dim), optionally only some rows and columns."""
        if key not in self.meta["arrays"]:
            raise KeyError(f"{key!r} is not in the store at {self.path}; it holds {len(self.keys)} arrays "
                           f"such as {self.keys[:3]}")
        with _OPEN_LOCK:
            array = np.load(self.path / "arrays" / f"{key}.npy", mmap_mode="r", allow_pickle=False)
        if rows is not None:
            array = array[rows]
        if columns is not None:
            array = array[:, columns]
        return np.asarray(array, dtype=np.float32)


def store_keys(store, backbone: Backbone, settings: ExtractionSettings, n_texts: int) -> list[str]:
    """The arrays of ``store`` that ``settings`` read from ``backbone``, in the store's order, after checking what
    can be: each is there, as wide as the backbone's; the store holds ``n_texts`` rows (where it says); and the
    weights and tokenisation it was extracted with (where its metadata records them) are these.

    ``store`` is an ``ActivationStore`` or any object with its reading interface (``keys``, ``dim``, ``load``,
    ``path``; ``n_texts`` and ``meta`` are read when present)."""
    wanted = all_keys(backbone.num_layers, settings.representations, settings.poolings)
    held = set(store.keys)
    missing = [key for key in wanted if key not in held]
    if missing:
        raise ValueError(f"the store at {store.path} has no {missing[0]!r} ({len(missing)} of the {len(wanted)} "
                         f"arrays representations={settings.representations!r}, poolings={settings.poolings!r} read "
                         f"from {backbone.name!r} are missing); it holds {sorted(held)[:4]}")
    for key in wanted:
        width = backbone.hidden_size if parse_key(key)[0] == "hidden" else backbone.ffn_size
        if store.dim(key) != width:
            raise ValueError(f"the store's {key} has {store.dim(key)} columns, but {backbone.name!r} gives it {width}: "
                             f"the store was extracted from another backbone")
    n_rows = getattr(store, "n_texts", None)
    if n_rows is not None and n_rows != n_texts:
        raise ValueError(f"the store holds {n_rows} texts but y has {n_texts} labels (row i of the store is the "
                         f"text labelled y[i])")
    meta = getattr(store, "meta", None)
    meta = meta if isinstance(meta, dict) else {}
    if meta.get("weights_sha256") not in (None, backbone.weights_hash()):
        raise ValueError(f"the store at {store.path} was extracted from weights (sha256 {meta['weights_sha256'][:12]}"
                         f"…) that differ from {backbone.name!r}'s ({backbone.weights_hash()[:12]}…)")
    recorded = meta.get("settings") or {}
    for name in ("max_length", "windows", "dtype") + (("window_overlap",) if settings.windows else ()):
        if name in recorded and recorded[name] != getattr(settings, name):
            option = "store_dtype" if name == "dtype" else name
            raise ValueError(f"the store at {store.path} was extracted with {name}={recorded[name]!r}, not "
                             f"{getattr(settings, name)!r}: set the estimator's {option} to match")
    wanted = set(wanted)
    return [key for key in store.keys if key in wanted]


def find_stored(backbone: Backbone, texts: Sequence[str], key: str, *, root: str | Path | None = None,
                max_length: int | None = None, windows: bool = False, window_overlap: int = 64) -> np.ndarray | None:
    """The array ``key`` for exactly these texts, if a complete store made with the same model and tokenisation
    settings already holds it (so a baseline can reuse what STC extracted); else None."""
    directory = Path(root or cache_root() / "stores")
    if not directory.is_dir():
        return None
    digest, weights = texts_hash(list(texts)), backbone.weights_hash()
    for meta_path in sorted(directory.glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        settings = meta.get("settings", {})
        if (meta.get("texts_sha256") == digest and meta.get("weights_sha256") == weights
                and key in meta.get("arrays", {}) and settings.get("max_length") == max_length
                and settings.get("windows") == windows
                and (not windows or settings.get("window_overlap") == window_overlap)):
            return ActivationStore(meta_path.parent).load(key)
    return None


def _settings_record(settings: ExtractionSettings) -> dict:
    """The settings as hashed into a store's id and written into its plan. ``max_layer`` (a field that was never
    set) stays in as null, so that stores written before it was removed keep their ids and plans."""
    record = dict(asdict(settings), max_layer=None)
    if not settings.pairs:  # stores of single texts keep the ids they had before pairs existed
        del record["pairs"]
    return record


def store_id(backbone: Backbone, settings: ExtractionSettings, texts_digest: str) -> str:
    payload = json.dumps({"weights": backbone.weights_hash(), "tokenizer": type(backbone.tokenizer).__name__,
                          "vocab": len(backbone.tokenizer), "settings": _settings_record(settings), "texts": texts_digest,
                          "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def build_store(backbone: Backbone, texts: Sequence[str], settings: ExtractionSettings, *,
                root: str | Path | None = None, shard: tuple[int, int] | None = None, token_budget: int = 8192,
                shard_size: int | None = None, show_progress_bar: bool = True,
                engine: ShardEngine | None = None) -> ActivationStore | None:
    """Extract into (or reuse) the store for these texts; None when only this process's slice is done so far.

    ``engine`` runs the missing shards elsewhere (``stc.distributed.RayEngine``: an actor pool); None runs them
    here. Either way every shard goes through :func:`extract_shard`, so the store is the same byte for byte.
    """
    if shard is not None and not (isinstance(shard, tuple) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    texts = list(texts)
    digest = texts_hash(texts)
    directory = Path(root or cache_root() / "stores") / store_id(backbone, settings, digest)
    if (directory / "meta.json").exists():
        _tidy_complete(directory)
        return ActivationStore(directory)
    keys = all_keys(backbone.num_layers, settings.representations, settings.poolings)
    dims = {key: backbone.hidden_size if parse_key(key)[0] == "hidden" else backbone.ffn_size for key in keys}
    if shard_size is None:  # default: as many texts as fit the accumulator budget
        shard_size = int(np.clip(_SHARD_BYTES // (4 * sum(dims.values())), 16, 4096))
    elif isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    n_shards = max(1, -(-len(texts) // shard_size))
    plan = {"model": backbone.name, "source": backbone.source, "gguf_file": backbone.gguf_file,
            "weights_sha256": backbone.weights_hash(), "settings": _settings_record(settings), "texts_sha256": digest,
            "n_texts": len(texts), "shard_size": shard_size, "n_shards": n_shards, "format_version": FORMAT_VERSION,
            "tokenizer": {"class": type(backbone.tokenizer).__name__, "padding_side": "right",
                          "max_length": settings.max_length or backbone.max_length}}
    plan = json.loads(json.dumps(plan))  # as it reads back from disk (tuples become lists)
    if engine is not None:
        engine.connect()  # an unreachable cluster fails here, before anything is written
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock = store_lock(directory, fcntl.LOCK_SH)
    except OSError as error:
        raise ValueError(f"cannot write the activation store at {directory}: {error.strerror or error}") from error
    with lock:  # shared: many writers side by side; finalising (exclusive) waits for them
        if (directory / "meta.json").exists():
            return ActivationStore(directory)
        (directory / "shards").mkdir(exist_ok=True)
        plan_path = directory / "plan.json"
        if plan_path.exists() and json.loads(plan_path.read_text(encoding="utf-8")) != plan:
            raise ValueError(f"{directory} holds a different extraction plan; delete it to start again")
        atomic_write_text(plan_path, json.dumps(plan, indent=1, sort_keys=True))
        mine = [j for j in range(n_shards) if shard is None or j % shard[1] == shard[0]]
        todo = [j for j in mine if not _shard_path(directory, j).exists()]
        bar = tqdm(total=len(texts), initial=len(texts) - sum(_shard_len(j, shard_size, len(texts)) for j in todo),
                   desc=f"extract {backbone.name}", unit="text", disable=not show_progress_bar)
        jobs = [(j, texts[j * shard_size:(j + 1) * shard_size]) for j in todo]
        if engine is None:
            _extract_here(backbone, directory, jobs, keys, settings, token_budget, bar.update)
        else:
            engine.extract_shards(backbone, directory, jobs, keys, settings, token_budget, bar.update)
        bar.close()
    with store_lock(directory, fcntl.LOCK_EX):
        if (directory / "meta.json").exists():  # another process finalised while this one waited
            return ActivationStore(directory)
        if all(_shard_path(directory, j).exists() for j in range(n_shards)):
            _finalize(directory, plan, keys, dims)
            return ActivationStore(directory)
    return None


class ShardEngine(Protocol):
    """What runs a list of shards somewhere else (``stc.distributed.RayEngine``)."""

    def connect(self) -> None: ...

    def extract_shards(self, backbone: Backbone, directory: Path, jobs: list[tuple[int, list[str]]],
                       keys: list[str], settings: ExtractionSettings, token_budget: int,
                       on_done: Callable[[int], object]) -> None: ...


def _extract_here(backbone: Backbone, directory: Path, jobs: list[tuple[int, list[str]]], keys: list[str],
                  settings: ExtractionSettings, token_budget: int, on_done: Callable[[int], object]) -> None:
    """Every job in this process: first those no other process has claimed, then (waiting) the rest."""
    waiting = []
    for j, shard_texts in jobs:
        extracted = extract_shard(backbone, directory, j, shard_texts, keys, settings, token_budget, blocking=False)
        if extracted is None:
            waiting.append((j, shard_texts))
        else:
            on_done(len(shard_texts))
    for j, shard_texts in waiting:  # another writer holds it: wait, and redo it if that writer died
        extract_shard(backbone, directory, j, shard_texts, keys, settings, token_budget, blocking=True)
        on_done(len(shard_texts))


def extract_shard(backbone: Backbone, directory: Path, j: int, shard_texts: list[str], keys: list[str],
                  settings: ExtractionSettings, token_budget: int, *, blocking: bool = True) -> int | None:
    """Claim shard j, extract it and write it atomically: the number of texts extracted, 0 if the shard was
    already there, None if another writer holds the claim and ``blocking`` is False.

    The claim is an flock on ``shards/NNNNN.claim``: the kernel drops it when its holder dies (even by kill -9),
    so a dead writer's shard is simply claimed and redone by the next one.
    """
    directory = Path(directory)
    target = _shard_path(directory, j)
    with store_lock(directory, fcntl.LOCK_SH), \
            _flock(target.with_name(f"{j:05d}.claim"), fcntl.LOCK_EX, blocking=blocking) as held:
        if not held:
            return None
        if target.exists():
            return 0
        for stale in target.parent.glob(target.name + ".tmp-*"):  # left by a writer that died mid-write
            stale.unlink(missing_ok=True)
        features = extract_features(backbone, shard_texts, keys, max_length=settings.max_length,
                                    windows=settings.windows, window_overlap=settings.window_overlap,
                                    token_budget=token_budget)
        for key, values in features.items():
            if not np.isfinite(values).all():
                raise ValueError(f"the model produced non-finite activations in {key} (shard {j}); "
                                 f"try dtype='float32'")
        with atomic_path(target) as partial:
            save_file(features, str(partial), metadata={"shard": str(j)})
    return len(shard_texts)


def _shard_path(directory: Path, j: int) -> Path:
    return directory / "shards" / f"{j:05d}.safetensors"


def _shard_len(j: int, shard_size: int, n_texts: int) -> int:
    return max(0, min(shard_size, n_texts - j * shard_size))


@contextmanager
def _flock(path: Path, mode: int, *, blocking: bool = True) -> Iterator[bool]:
    """Hold an flock on ``path`` (created if missing): yields True, or False at once if busy and not blocking."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(descriptor, mode | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def store_lock(directory: Path, mode: int):
    """The store's lock: shared while shards are written, exclusive while they are merged or tidied away."""
    return _flock(Path(directory) / _LOCK_NAME, mode)


def _tidy_complete(directory: Path) -> None:
    """Remove what a writer killed after writing meta.json left behind (its shards, a half-merged copy)."""
    if (directory / "shards").exists() or any(directory.glob("arrays.tmp-*")):
        with store_lock(directory, fcntl.LOCK_EX):
            shutil.rmtree(directory / "shards", ignore_errors=True)
            for partial in directory.glob("arrays.tmp-*"):
                shutil.rmtree(partial, ignore_errors=True)


def _finalize(directory: Path, plan: dict, keys: list[str], dims: dict[str, int]) -> None:
    """Merge the shards into one array per key; float16 only for arrays whose values all fit.

    Called under the exclusive store lock: no one else is writing, so whatever a killed finaliser left (a
    half-merged ``arrays.tmp-PID``, an ``arrays`` without ``meta.json``) is removed and the merge starts afresh.
    """
    for leftover in [*directory.glob("arrays.tmp-*"), directory / "arrays"]:
        shutil.rmtree(leftover, ignore_errors=True)
    shard_files = [_shard_path(directory, j) for j in range(plan["n_shards"])]
    partial = directory / f"arrays.tmp-{os.getpid()}"
    partial.mkdir()
    arrays_meta = {}
    for key in keys:
        parts = []
        for path in shard_files:  # one tensor at a time: memory stays at one array, not the whole store
            with safe_open(str(path), framework="numpy") as shard_file:
                parts.append(shard_file.get_tensor(key))
        peak = max(float(np.abs(part).max()) for part in parts)
        dtype = "float16" if plan["settings"]["dtype"] == "float16" and peak < _FLOAT16_MAX else "float32"
        out = np.lib.format.open_memmap(partial / f"{key}.npy", mode="w+", dtype=dtype,
                                        shape=(plan["n_texts"], dims[key]))
        start = 0
        for part in parts:
            out[start:start + len(part)] = part
            start += len(part)
        out.flush()
        del out
        arrays_meta[key] = {"dim": dims[key], "dtype": dtype}
    os.rename(partial, directory / "arrays")
    meta = dict(plan, arrays=arrays_meta)
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=1, sort_keys=True))  # complete from here
    shutil.rmtree(directory / "shards", ignore_errors=True)
