"""On-disk activation store: one memory-mapped ``.npy`` per (representation, layer, pooling), plus JSON metadata.

Extraction writes shards (contiguous slices of the texts, each one safetensors file written atomically), so an
interrupted run resumes at the first missing shard and several processes can each take a slice
(``shard=(i, n)`` takes every shard j with j % n == i). When every shard is there, they are merged into the final
arrays and ``meta.json`` is written last: its presence means the store is complete. The directory name is a hash of
model weights, settings and texts, so the same run again finds and reuses it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file
from tqdm.auto import tqdm

from ._files import atomic_path, atomic_write_text, cache_root
from .backbone import Backbone
from .extract import all_keys, extract_features, parse_key

__all__ = ["ExtractionSettings", "ActivationStore", "build_store", "find_stored", "texts_hash", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_FLOAT16_MAX = float(np.finfo(np.float16).max)
_SHARD_BYTES = 256 * 2**20  # per-shard accumulator budget: memory stays flat whatever N is


@dataclass(frozen=True)
class ExtractionSettings:
    """Everything besides the model and the texts that decides the stored values."""

    representations: tuple[str, ...]
    poolings: tuple[str, ...]
    max_length: int | None = None
    windows: bool = False
    window_overlap: int = 64
    dtype: str = "float32"  # of the stored arrays: float32, or float16 where no value overflows

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"store dtype must be 'float32' or 'float16', got {self.dtype!r}")


def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        encoded = text.encode("utf-8", "surrogatepass")
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
        array = np.load(self.path / "arrays" / f"{key}.npy", mmap_mode="r", allow_pickle=False)
        if rows is not None:
            array = array[rows]
        if columns is not None:
            array = array[:, columns]
        return np.asarray(array, dtype=np.float32)


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
    return dict(asdict(settings), max_layer=None)


def store_id(backbone: Backbone, settings: ExtractionSettings, texts_digest: str) -> str:
    payload = json.dumps({"weights": backbone.weights_hash(), "tokenizer": type(backbone.tokenizer).__name__,
                          "vocab": len(backbone.tokenizer), "settings": _settings_record(settings), "texts": texts_digest,
                          "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def build_store(backbone: Backbone, texts: Sequence[str], settings: ExtractionSettings, *,
                root: str | Path | None = None, shard: tuple[int, int] | None = None, token_budget: int = 8192,
                shard_size: int | None = None, show_progress_bar: bool = True) -> ActivationStore | None:
    """Extract into (or reuse) the store for these texts; None when only this process's slice is done so far."""
    if shard is not None and not (isinstance(shard, tuple) and len(shard) == 2 and 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard!r}")
    texts = list(texts)
    digest = texts_hash(texts)
    directory = Path(root or cache_root() / "stores") / store_id(backbone, settings, digest)
    if (directory / "meta.json").exists():
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
    (directory / "shards").mkdir(parents=True, exist_ok=True)
    plan_path = directory / "plan.json"
    plan = json.loads(json.dumps(plan))  # as it reads back from disk (tuples become lists)
    if plan_path.exists() and json.loads(plan_path.read_text(encoding="utf-8")) != plan:
        raise ValueError(f"{directory} holds a different extraction plan; delete it to start again")
    atomic_write_text(plan_path, json.dumps(plan, indent=1, sort_keys=True))
    mine = [j for j in range(n_shards) if shard is None or j % shard[1] == shard[0]]
    todo = [j for j in mine if not (directory / "shards" / f"{j:05d}.safetensors").exists()]
    bar = tqdm(total=len(texts), initial=len(texts) - sum(_shard_len(j, shard_size, len(texts)) for j in todo),
               desc=f"extract {backbone.name}", unit="text", disable=not show_progress_bar)
    for j in todo:
        start = j * shard_size
        features = extract_features(backbone, texts[start:start + shard_size], keys,
                                    max_length=settings.max_length, windows=settings.windows,
                                    window_overlap=settings.window_overlap, token_budget=token_budget)
        for key, values in features.items():
            if not np.isfinite(values).all():
                raise ValueError(f"the model produced non-finite activations in {key} (texts {start}.."
                                 f"{start + len(values) - 1}); try dtype='float32'")
        target = directory / "shards" / f"{j:05d}.safetensors"
        with atomic_path(target) as partial:
            save_file(features, str(partial), metadata={"shard": str(j)})
        bar.update(len(features[keys[0]]))
    bar.close()
    if all((directory / "shards" / f"{j:05d}.safetensors").exists() for j in range(n_shards)):
        _finalize(directory, plan, keys, dims)
        return ActivationStore(directory)
    return None


def _shard_len(j: int, shard_size: int, n_texts: int) -> int:
    return max(0, min(shard_size, n_texts - j * shard_size))


def _merge_shards(shard_files: list[Path], key: str, path: Path, plan: dict, dim: int) -> dict:
    """Write array ``key`` of every shard, in order, to one ``.npy``; its metadata."""
    parts = []
    for shard_path in shard_files:  # one tensor at a time: memory stays at one array, not the whole store
        with safe_open(str(shard_path), framework="numpy") as shard_file:
            parts.append(shard_file.get_tensor(key))
    peak = max(float(np.abs(part).max()) for part in parts)
    dtype = "float16" if plan["settings"]["dtype"] == "float16" and peak < _FLOAT16_MAX else "float32"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(plan["n_texts"], dim))
    start = 0
    for part in parts:
        out[start:start + len(part)] = part
        start += len(part)
    out.flush()
    del out
    return {"dim": dim, "dtype": dtype}


def _finalize(directory: Path, plan: dict, keys: list[str], dims: dict[str, int]) -> None:
    """Merge the shards into one array per key; float16 only for arrays whose values all fit."""
    shard_files = [directory / "shards" / f"{j:05d}.safetensors" for j in range(plan["n_shards"])]
    final = directory / "arrays"
    arrays_meta = {}
    try:
        with atomic_path(final) as partial:
            partial.mkdir()
            for key in keys:
                arrays_meta[key] = _merge_shards(shard_files, key, partial / f"{key}.npy", plan, dims[key])
    except OSError:
        if not final.is_dir():
            raise
        return  # another process finalised first: its arrays are identical, and it writes meta.json
    meta = dict(plan, arrays=arrays_meta)
    atomic_write_text(directory / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
    shutil.rmtree(directory / "shards", ignore_errors=True)
