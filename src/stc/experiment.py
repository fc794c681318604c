"""Side-by-side experiments: STC and the paper's baselines on identical splits, written as JSON and a Markdown table.

``stc experiment --dataset mr --model minilm --methods stc,embedding,finetune,stc-finetuned,icl --out DIR`` fits
each method on the dataset's train split (the validation split chooses every setting), scores it on the test
split, and after each method rewrites ``DIR/<dataset>-<model>.json`` and ``DIR/results-table.md`` (every JSON in
DIR), so a long run that stops keeps what it finished. This module imports the baselines; the core never imports it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ._files import atomic_write_text
from ._metrics import score
from .data import Split, TextDataset, load_dataset, stratified_split

__all__ = ["METHODS", "ExperimentSettings", "run_experiment", "subsample", "markdown_table", "write_results",
           "machine_description", "ICL_INSTRUCTIONS"]

METHODS = ("stc", "embedding", "finetune", "stc-finetuned", "icl", "setfit")

#: Per-dataset opening line of the ICL prompt; the label words are the dataset's own label strings.
ICL_INSTRUCTIONS = {
    "mr": "Classify the sentiment of each movie review as negative or positive.\n\n",
    "tweets": "Classify the sentiment of each tweet as negative, neutral or positive.\n\n",
    "bbc-news": "Classify each news article by topic: business, entertainment, politics, sports or tech.\n\n",
}


@dataclass
class ExperimentSettings:
    """What one ``stc experiment`` run does. Limits map a method to the number of texts it may use."""

    dataset: str
    model: str = "minilm"
    methods: tuple[str, ...] = ("stc", "embedding", "finetune", "stc-finetuned", "icl")
    out: str = "stc-experiments"
    work_dir: str | None = None  # fine-tuned checkpoints and activation stores (default: out)
    seed: int = 42
    limit: int | None = None  # stratified cap on every split, for all methods
    train_limits: dict[str, int] = field(default_factory=dict)
    test_limits: dict[str, int] = field(default_factory=dict)
    max_length: int | None = None
    windows: bool = False
    finetune_epochs: int = 3
    finetune_learning_rate: float = 5e-5
    finetune_batch_size: int = 16
    icl_model: str = "smollm2"
    icl_shots: int = 1
    setfit_iterations: int = 5
    setfit_max_steps: int | None = 500
    probe_solver: str = "auto"
    stc_poolings: tuple[str, ...] | None = None  # None: STC's default (mean, max and the natural token)
    stc_probe_cs: tuple[float, ...] | None = None  # None: STC's default probe C grid
    n_jobs: int | None = -1
    threads: int | None = None  # torch intra-op threads (None: torch's default); 1 is fastest on a busy machine
    device: str = "auto"
    show_progress_bar: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty list from {METHODS}, got {list(self.methods)}")
        for name, limits in (("train_limits", self.train_limits), ("test_limits", self.test_limits)):
            for method, n in limits.items():
                if method not in METHODS:
                    raise ValueError(f"{name} names unknown method {method!r}; choose from {METHODS}")
                if not isinstance(n, int) or n < 2:
                    raise ValueError(f"{name}[{method!r}] must be an integer >= 2, got {n!r}")

    @property
    def finetuned_dir(self) -> Path:
        safe_model = Path(self.model).name.replace(".gguf", "")
        return Path(self.work_dir or self.out) / f"finetuned-{safe_model}-{Path(self.dataset).stem}"


def _log(message: str) -> None:
    print(message, flush=True)


def subsample(split: Split, n: int | None, seed: int) -> Split:
    """A stratified, seeded subset of ``n`` texts of a split (the split itself when n is None or not smaller)."""
    if n is None or n >= len(split):
        return split
    return stratified_split(split.texts, split.labels, (n / len(split), 1 - n / len(split)), seed)[0]


def machine_description() -> str:
    import torch

    return (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), {'CUDA' if torch.cuda.is_available() else 'no GPU'}")


def _estimator(method: str, settings: ExperimentSettings, metric: str):
    from .baselines import EmbeddingClassifier, FineTuneClassifier, ICLClassifier, SetFitClassifier
    from .classifier import STCClassifier

    common = {"random_state": settings.seed, "show_progress_bar": settings.show_progress_bar,
              "device": settings.device}
    store_dir = str(Path(settings.work_dir or settings.out) / "stores")
    if method in ("stc", "stc-finetuned"):
        model = settings.model
        if method == "stc-finetuned":
            if not (settings.finetuned_dir / "config.json").exists():
                raise FileNotFoundError(f"stc-finetuned needs the fine-tuned checkpoint {settings.finetuned_dir}: "
                                        f"run the finetune method first (same --work-dir)")
            model = str(settings.finetuned_dir)
        return STCClassifier(model=model, metric=metric, max_length=settings.max_length, windows=settings.windows,
                             store_dir=store_dir, n_jobs=settings.n_jobs, probe_solver=settings.probe_solver,
                             poolings=settings.stc_poolings,
                             **({"probe_Cs": settings.stc_probe_cs} if settings.stc_probe_cs else {}), **common)
    if method == "embedding":  # its own forward pass, so that its train time is its own cost, not STC's store
        return EmbeddingClassifier(model=settings.model, metric=metric, max_length=settings.max_length,
                                   windows=settings.windows, reuse_store=False, **common)
    if method == "finetune":
        return FineTuneClassifier(model=settings.model, metric=metric, epochs=settings.finetune_epochs,
                                  learning_rate=settings.finetune_learning_rate,
                                  batch_size=settings.finetune_batch_size, max_length=settings.max_length or 256,
                                  output_dir=str(settings.finetuned_dir), **common)
    if method == "icl":
        instruction = ICL_INSTRUCTIONS.get(Path(settings.dataset).name)
        return ICLClassifier(model=settings.icl_model, shots=settings.icl_shots,
                             **({"instruction": instruction} if instruction else {}), **common)
    return SetFitClassifier(model=settings.model, metric=metric, num_iterations=settings.setfit_iterations,
                            max_steps=settings.setfit_max_steps, max_length=settings.max_length, **common)


def _details(method: str, estimator) -> dict:
    """What each method chose, for the JSON (not the table)."""
    if method in ("stc", "stc-finetuned"):
        # fit_timings shows where fit_seconds went; an "extract" near zero means an existing store was reused.
        # selection_ keeps the floor's verdict (the embedding readout it chose, the margin the search's choice had).
        return {"configuration": estimator.configuration_, "poolings_searched": estimator.extraction_["poolings"],
                "probe_Cs": "relative" if estimator.probe_Cs is None else list(estimator.probe_Cs),
                "kept_neurons_sample": estimator.kept_neurons_[:10], "fit_timings": estimator.fit_timings_,
                "selection": estimator.selection_}
    if method == "embedding":
        return {"pooling": estimator.pooling_, "C": estimator.C_, "class_weight": estimator.class_weight_,
                "val_scores": {str(C): value for C, value in estimator.val_scores_.items()}}
    if method == "finetune":
        return {"best_epoch": estimator.best_epoch_, "val_scores_by_epoch": estimator.val_scores_,
                "train_losses": estimator.train_losses_, "max_length": estimator.max_length_,
                "checkpoint": estimator.checkpoint_dir_}
    if method == "icl":
        return {"shots_per_class": estimator.shots, "label_words": estimator.label_words_,
                "model_params": estimator.n_model_params_, "prompt_prefix": estimator.prompt_prefix_}
    return {"num_iterations": estimator.num_iterations, "max_steps": estimator.max_steps}


def _optional_float(value) -> float | None:
    return None if value is None else float(value)


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _run_method(method: str, settings: ExperimentSettings, dataset: TextDataset) -> dict:
    import torch

    torch.manual_seed(settings.seed)
    np.random.seed(settings.seed)
    train = subsample(dataset.train, settings.train_limits.get(method), settings.seed)
    test = subsample(dataset.test, settings.test_limits.get(method), settings.seed)
    validation = dataset.validation
    estimator = _estimator(method, settings, dataset.metric)
    backbone = settings.icl_model if method == "icl" else (
        str(settings.finetuned_dir) if method == "stc-finetuned" else settings.model)
    _log(f"[experiment] {dataset.name} x {settings.model} · {method}: fitting on {len(train)} texts "
         f"(validation {len(validation)}), backbone {backbone} …")
    estimator.fit(train.texts, train.labels, X_val=validation.texts, y_val=validation.labels)
    _log(f"[experiment] {method}: fitted in {estimator.fit_seconds_:.1f} s; predicting {len(test)} test texts …")
    started = time.perf_counter()
    predictions = estimator.predict(test.texts)
    predict_seconds = time.perf_counter() - started
    test_score = score(np.asarray(test.labels), predictions, dataset.metric)
    subsampled = [f"{name} {len(part)} of {len(whole)}" for name, part, whole in
                  (("train", train, dataset.train), ("test", test, dataset.test)) if len(part) < len(whole)]
    row = {"dataset": dataset.name, "model": settings.model, "backbone": backbone, "method": method,
           "metric": dataset.metric, "test_score": test_score,
           "val_score": _optional_float(getattr(estimator, "val_score_", None)),
           "n_train": len(train), "n_validation": len(validation), "n_test": len(test),
           "subsampled": "; ".join(subsampled) or None, "fit_seconds": float(estimator.fit_seconds_),
           "predict_seconds": predict_seconds, "test_texts_per_second": len(test) / predict_seconds,
           "n_features": int(estimator.n_features_) if method not in ("finetune", "setfit", "icl") else None,
           "n_trainable_params": int(getattr(estimator, "n_trainable_params_", 0))
           if method in ("finetune", "setfit", "icl") else None,
           "exit_layer": int(estimator.exit_layer_), "max_length": settings.max_length, "windows": settings.windows,
           "seed": settings.seed, "details": _details(method, estimator)}
    _log(f"[experiment] {method}: test {dataset.metric} {test_score:.4f} (validation {_cell(row['val_score'])}), "
         f"fit {row['fit_seconds']:.1f} s, {row['test_texts_per_second']:.1f} test texts/s")
    return row


def run_experiment(settings: ExperimentSettings) -> list[dict]:
    """Run every method of ``settings`` on the same splits; rows are written after each method finishes."""
    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)
    dataset = load_dataset(settings.dataset, seed=settings.seed, limit=settings.limit)
    if dataset.validation is None or dataset.test is None:
        raise ValueError(f"dataset {settings.dataset!r} needs validation and test splits for an experiment")
    methods = list(settings.methods)
    if "stc-finetuned" in methods and "finetune" in methods and methods.index("finetune") > methods.index(
            "stc-finetuned"):
        methods.remove("stc-finetuned")
        methods.insert(methods.index("finetune") + 1, "stc-finetuned")
    _log(f"[experiment] {dataset.description}")
    _log(f"[experiment] methods {', '.join(methods)}; train {len(dataset.train)}, validation "
         f"{len(dataset.validation)}, test {len(dataset.test)}; seed {settings.seed}")
    rows = []
    for method in methods:
        row = _run_method(method, settings, dataset)
        row.update({"command": settings.command, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                    "machine": machine_description(), "limit": settings.limit})
        rows.append(row)
        write_results(Path(settings.out), rows, settings)
    return rows


def _results_path(out: Path, dataset: str, model: str) -> Path:
    return out / f"{Path(dataset).name}-{Path(model).name.replace('.gguf', '')}.json"


def write_results(out: Path, rows: list[dict], settings: ExperimentSettings | None = None) -> Path:
    """Merge rows into ``out/<dataset>-<model>.json`` (a method's new row replaces its old one) and rewrite
    ``out/results-table.md`` from every JSON in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    by_file: dict[Path, list[dict]] = {}
    for row in rows:
        by_file.setdefault(_results_path(out, row["dataset"], row["model"]), []).append(row)
    for path, new_rows in by_file.items():
        old = json.loads(path.read_text(encoding="utf-8"))["rows"] if path.exists() else []
        replaced = {row["method"] for row in new_rows}
        merged = [row for row in old if row["method"] not in replaced] + new_rows
        merged.sort(key=lambda row: METHODS.index(row["method"]) if row["method"] in METHODS else len(METHODS))
        payload = {"rows": merged, **({"settings": asdict(settings)} if settings else {})}
        atomic_write_text(path, json.dumps(payload, indent=1, default=str))
    all_rows = [row for path in sorted(out.glob("*.json")) for row in _experiment_rows(path)]
    (out / "results-table.md").write_text(markdown_table(all_rows) + "\n", encoding="utf-8")
    return out / "results-table.md"


def _experiment_rows(path: Path) -> list[dict]:
    """The rows of an experiment's results file; none from any other JSON file in the same folder (benchmarks keep
    their own records beside them, some also under "rows"): an experiment row names its dataset, model and method."""
    payload = json.loads(path.read_text(encoding="utf-8"))
    rows = payload.get("rows") if isinstance(payload, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) and {"dataset", "model", "method"} <= set(row)
                                             for row in rows):
        return []
    return rows


def _size(row: dict) -> str:
    if row.get("n_features") is not None:
        return f"{row['n_features']:,} features"
    params = row.get("n_trainable_params") or 0
    if params == 0:
        return "0 trained (prompt only)"
    return f"{params / 1e6:.1f} M params" if params >= 1e5 else f"{params:,} params"


_METHOD_NAMES = {"stc": "STC", "embedding": "sentence embedding + LR", "finetune": "fine-tuning",
                 "stc-finetuned": "STC on fine-tuned", "icl": "in-context learning", "setfit": "SetFit"}


def markdown_table(rows: list[dict]) -> str:
    """One line per (dataset, model, method): test metric, validation metric, training time, test throughput,
    features or trainable parameters, deepest layer used, texts used (subsampled rows marked with *)."""
    header = ("| dataset | model | method | backbone | test | val | metric | train time (s) | test texts/s "
              "| features / trained params | deepest layer | n train / test |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        mark = " *" if row.get("subsampled") else ""
        poolings = (row.get("details") or {}).get("poolings_searched")
        mark = f" [{'+'.join(poolings)} pooling]{mark}" if poolings else mark
        lines.append(
            f"| {row['dataset']} | {Path(str(row['model'])).name} "
            f"| {_METHOD_NAMES.get(row['method'], row['method'])}{mark} "
            f"| {Path(str(row['backbone'])).name} | {row['test_score']:.4f} | {_cell(row['val_score'])} "
            f"| {row['metric']} | {row['fit_seconds']:.1f} | {row['test_texts_per_second']:.1f} | {_size(row)} "
            f"| {row['exit_layer']} | {row['n_train']} / {row['n_test']} |")
    notes = [f"* {row['dataset']} x {Path(str(row['model'])).name} · {row['method']}: "
             f"subsampled ({row['subsampled']})" for row in rows if row.get("subsampled")]
    return "\n".join(lines + ([""] + notes if notes else []))
