"""Many tasks, one forward pass: fitted models that read the same backbone, bundled.

Each STC model is a few hundred neurons of a backbone's layers and a small head. Models fitted on one backbone
(the same weights) with the same tokenisation can therefore share one pass: the backbone runs once, up to the
deepest exit layer among them, pooling only the union of their kept neurons; each task's head then reads its own
columns of that union. A task's probabilities from the bundle are bit for bit its own model's (the same pooled
values of the same batches, through the same head).

A bundle directory holds ``stc_bundle.json`` (the backbone reference, the tokenisation, the task names in order) and
one saved model per task under ``tasks/<name>/`` (``Readout.to_files``: its kept neurons, head and record). Loading
checks every task against the bundle's backbone and tokenisation again.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._files import replace_directory
from ._readout_fields import Frozen
from .backbone import Backbone
from .extract import extract_features, parse_key
from .readout import CONFIG_FILE, Readout

__all__ = ["Bundle", "BUNDLE_FILE"]

BUNDLE_FILE = "stc_bundle.json"
FORMAT = "stc-bundle"
FORMAT_VERSION = 1
_TASKS = "tasks"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CHUNK = 2048  # texts per extraction call: memory stays flat for any number of texts
#: What the tasks of a bundle must share, as (field, how to read it from a readout).
_SHARED = (("backbone weights sha256", lambda r: r.backbone.sha256),
           ("backbone name", lambda r: r.backbone.name),
           ("max_length", lambda r: r.extraction.max_length),
           ("windows", lambda r: r.extraction.windows),
           ("window_overlap", lambda r: r.extraction.window_overlap),
           ("pairs (text pairs or single texts)", lambda r: r.extraction.pairs))


@dataclass(frozen=True, eq=False)
class Bundle:
    """Fitted models of several tasks on one backbone, run in one pass.

    Parameters
    ----------
    tasks : mapping of str to Readout
        Each task's fitted model (``STCClassifier.readout_``), under its name, in the order results are given.

    Examples
    --------
    >>> bundle = Bundle.from_models({"sentiment": stc.load("sentiment-model"), "topic": stc.load("topic-model")})
    >>> bundle.save("my-bundle")
    >>> results = Bundle.load("my-bundle").predict_proba(["a text"], backbone=bundle.load_backbone())
    """

    tasks: Mapping[str, Readout]

    def __post_init__(self) -> None:
        if not isinstance(self.tasks, Mapping) or not self.tasks:
            raise ValueError("a bundle needs at least one task")
        for name, readout in self.tasks.items():
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"task name {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
            if not isinstance(readout, Readout):
                raise TypeError(f"task {name!r} must be a fitted model's Readout, got {type(readout).__name__}")
        first_name, first = next(iter(self.tasks.items()))
        for name, readout in self.tasks.items():
            for field, read in _SHARED:
                if read(readout) != read(first):
                    raise ValueError(f"task {name!r} differs from task {first_name!r} in its {field} "
                                     f"({read(readout)!r} vs {read(first)!r}): a bundle shares one backbone pass")
        object.__setattr__(self, "tasks", Frozen(dict(self.tasks)))

    @classmethod
    def from_models(cls, models, names: Sequence[str] | None = None) -> Bundle:
        """A bundle of fitted models: a mapping of name to model, or a sequence of models with ``names``.

        A model is a fitted ``STCClassifier`` or its ``Readout``; models whose backbone weights or tokenisation
        differ are refused, naming the field."""
        if isinstance(models, Mapping):
            if names is not None:
                raise ValueError("give names either as the mapping's keys or as names=, not both")
            items = list(models.items())
        else:
            models = list(models)
            if names is None or len(names) != len(models):
                raise ValueError(f"give one name per model: {len(models)} models, "
                                 f"{None if names is None else len(names)} names")
            if len(set(names)) != len(names):
                raise ValueError(f"task names must differ, got {list(names)}")
            items = list(zip(names, models))
        return cls({name: getattr(model, "readout_", model) for name, model in items})

    # --- what it reads -------------------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.tasks)

    @property
    def exit_layer(self) -> int:
        """The deepest layer any task reads: the one pass runs this far."""
        return max(readout.exit_layer for readout in self.tasks.values())

    @property
    def union_columns(self) -> dict[str, np.ndarray]:
        """Every array any task reads, and the union of its kept neurons (sorted)."""
        union: dict[str, set] = {}
        for readout in self.tasks.values():
            for key, columns in readout.kept_columns.items():
                union.setdefault(key, set()).update(int(c) for c in columns)
        return {key: np.array(sorted(union[key]), dtype=np.int64) for key in sorted(union, key=parse_key)}

    def _reference(self) -> Readout:
        return next(iter(self.tasks.values()))

    def load_backbone(self, *, model: str | None = None, device: str = "auto", dtype: str = "auto",
                      trust_remote_code: bool = False) -> Backbone:
        """The backbone every task reads, checked against their weights' sha256 and kept neurons."""
        backbone = self._reference().load_backbone(model=model, device=device, dtype=dtype,
                                                   trust_remote_code=trust_remote_code)
        for readout in self.tasks.values():
            readout.check_backbone(backbone)
        return backbone

    # --- computing -----------------------------------------------------------------------------------------------

    def features(self, backbone: Backbone, texts: Sequence[str], *, token_budget: int = 8192,
                 show_progress_bar: bool = False) -> dict[str, np.ndarray]:
        """Each task's kept-neuron features (n_texts, its n_features), from one pass over ``texts``."""
        union = self.union_columns
        extraction = self._reference().extraction
        parts: dict[str, list[np.ndarray]] = {name: [] for name in self.tasks}
        for start in range(0, len(texts), _CHUNK):
            pooled = extract_features(
                backbone, texts[start:start + _CHUNK], list(union), columns=union,
                max_length=extraction.max_length, windows=extraction.windows,
                window_overlap=extraction.window_overlap, token_budget=token_budget,
                show_progress_bar=show_progress_bar and len(texts) > 256, progress_desc="predict")
            for name, readout in self.tasks.items():
                parts[name].append(np.hstack([pooled[key][:, np.searchsorted(union[key], columns)]
                                              for key, columns in readout.kept_columns.items()]))
        return {name: np.vstack(chunks) for name, chunks in parts.items()}

    def predict_proba(self, texts: Sequence[str], *, backbone: Backbone, token_budget: int = 8192,
                      tasks: Sequence[str] | None = None, show_progress_bar: bool = False) -> dict[str, np.ndarray]:
        """Each task's class probabilities (n_texts, its n_classes), columns in its ``classes`` order, from one
        pass; ``tasks`` picks some (by name) and the pass then reads only what they need."""
        bundle = self.subset(tasks) if tasks is not None else self
        features = bundle.features(backbone, texts, token_budget=token_budget, show_progress_bar=show_progress_bar)
        return {name: bundle.tasks[name].head.probabilities(features[name]) for name in bundle.tasks}

    def predict(self, texts: Sequence[str], *, backbone: Backbone, token_budget: int = 8192,
                tasks: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Each task's predicted labels (n_texts,) (a multi-label task's 0/1 indicator (n_texts, n_labels)), from
        one pass."""
        probabilities = self.predict_proba(texts, backbone=backbone, token_budget=token_budget, tasks=tasks)
        return {name: self.tasks[name].head.labels_from_probabilities(proba) for name, proba in probabilities.items()}

    def subset(self, names: Sequence[str]) -> Bundle:
        """The bundle of some of its tasks; an unknown name is a ValueError naming the known ones."""
        unknown = [name for name in names if name not in self.tasks]
        if unknown or not names:
            raise ValueError(f"unknown task(s) {unknown}: this bundle has {self.names}")
        return Bundle({name: self.tasks[name] for name in dict.fromkeys(names)})

    # --- files ---------------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the bundle to ``directory`` (replaced only if it is a bundle), atomically: a fresh directory
        renamed into place."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            for name, readout in self.tasks.items():
                (partial / _TASKS / name).mkdir(parents=True)
                readout.to_files(partial / _TASKS / name)
            reference = self._reference()
            document = {"format": FORMAT, "format_version": FORMAT_VERSION, "tasks": self.names,
                        "backbone": reference.backbone.record(), "extraction": reference.extraction_record(),
                        "exit_layer": self.exit_layer,
                        "n_union_neurons": int(sum(len(c) for c in self.union_columns.values()))}
            (partial / BUNDLE_FILE).write_text(json.dumps(document, indent=1), encoding="utf-8")
            replace_directory(partial, directory, marker=BUNDLE_FILE, what="an stc bundle")
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Bundle:
        """The bundle ``save`` wrote; a damaged or inconsistent directory is a ValueError naming what is wrong."""
        directory = Path(directory)
        path = directory / BUNDLE_FILE
        if not path.is_file():
            raise ValueError(f"{directory} is not an stc bundle: {BUNDLE_FILE} is missing (make one with "
                             f"`stc bundle MODEL_DIR... --out DIR`)")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT \
                or document.get("format_version") != FORMAT_VERSION or not isinstance(document.get("tasks"), list):
            raise ValueError(f"{path} is not an stc bundle of format version {FORMAT_VERSION}")
        tasks = {}
        for name in document["tasks"]:
            if not isinstance(name, str) or not _NAME.match(name):
                raise ValueError(f"{path}: task name {name!r} is not valid")
            tasks[name] = Readout.from_files(directory / _TASKS / name)
        bundle = cls(tasks)
        if bundle._reference().backbone.sha256 != (document.get("backbone") or {}).get("weights_sha256"):
            raise ValueError(f"{path}: its backbone sha256 is not its tasks' one")
        return bundle


def is_bundle(directory: str | Path) -> bool:
    """Whether ``directory`` holds a bundle (and not a single model)."""
    return (Path(directory) / BUNDLE_FILE).is_file() and not (Path(directory) / CONFIG_FILE).is_file()
