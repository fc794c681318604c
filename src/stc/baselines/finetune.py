"""The fine-tuning baseline: the whole backbone trained with a classification head, best epoch on validation.

The result is saved as an ordinary Hugging Face checkpoint, so ``STCClassifier(model=checkpoint_dir_)`` runs STC on
the fine-tuned model (the paper's second setting, STC-on-fine-tuned).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._metrics import check_metric, score
from .._validation import check_integers, check_texts
from .._estimator import fit_split, text_estimator_tags
from .._files import gguf_cache_dir
from ..backbone import load_backbone, resolve_device, resolve_model_name

__all__ = ["FineTuneClassifier", "checkpoint_source", "load_tokenizer", "length_batches", "count_parameters"]


def checkpoint_source(model: str) -> tuple[str, str | None]:
    """(directory, gguf_file) that ``from_pretrained`` can load for a model name: for a GGUF file the de-quantised
    copy that ``stc.backbone`` caches (made on first use, so the slow GGUF parsing happens once), else the file."""
    source, gguf_file = resolve_model_name(str(model))
    if gguf_file is None:
        return source, None
    cached = gguf_cache_dir(source)
    if not (cached / "config.json").exists():
        load_backbone(str(model), device="cpu")  # writes the cache
    if (cached / "config.json").exists():
        return str(cached), None
    return str(Path(source).parent), gguf_file


def length_batches(lengths: list[int], batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (little padding); batch order shuffled when rng is given."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def count_parameters(model: torch.nn.Module, trainable_only: bool = True) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def load_tokenizer(source: str, gguf_file: str | None):
    """The tokenizer of a checkpoint, with a pad token (decoders lack one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))
    if tokenizer.pad_token is None:  # decoders: pad with eos; the attention mask hides it
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class FineTuneClassifier(ClassifierMixin, BaseEstimator):
    """Full fine-tuning of the backbone with a sequence-classification head (AdamW, linear warm-up and decay).

    Parameters
    ----------
    model : alias (``minilm``, ``smollm2``), local directory, ``.gguf`` file or hub id.
    epochs : passes over the training texts; the epoch with the best validation metric is kept.
    learning_rate, weight_decay, warmup_ratio : AdamW with linear warm-up over ``warmup_ratio`` of the steps, then
        linear decay to zero.
    batch_size : texts per step (batches group texts of similar length).
    max_length : tokens per text (longer texts are truncated); None = min(model limit, 512).
    output_dir : where the best checkpoint is saved (``save_pretrained`` + tokenizer); None = not saved.
    """

    def __init__(self, model: str = "minilm", *, epochs: int = 3, learning_rate: float = 5e-5,
                 weight_decay: float = 0.01, warmup_ratio: float = 0.1, batch_size: int = 16,
                 max_length: int | None = 256, metric: str = "accuracy", validation_size: float = 0.2,
                 output_dir: str | None = None, device: str = "auto", random_state: int = 42,
                 show_progress_bar: bool = True):
        self.model = model
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_ratio = warmup_ratio
        self.batch_size = batch_size
        self.max_length = max_length
        self.metric = metric
        self.validation_size = validation_size
        self.output_dir = output_dir
        self.device = device
        self.random_state = random_state
        self.show_progress_bar = show_progress_bar

    def _check_params(self) -> None:
        check_metric(self.metric)
        check_integers(self, ("epochs", "batch_size"))
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise ValueError(f"learning_rate must be a number in (0, 1), got {self.learning_rate!r}")
        if not isinstance(self.warmup_ratio, (int, float)) or not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be a number in [0, 1), got {self.warmup_ratio!r}")
        check_integers(self, ("max_length",), at_least=2, none_allowed=True)

    def __sklearn_tags__(self) -> Tags:
        return text_estimator_tags(super().__sklearn_tags__(), transformer=False)

    def fit(self, X, y, *, X_val=None, y_val=None) -> FineTuneClassifier:
        """Fine-tune on texts X, labels y; keep the epoch scoring best on X_val/y_val (else a split of X)."""
        from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

        started = time.perf_counter()
        self._check_params()
        self.classes_, train_texts, train_codes, val_texts, val_codes = fit_split(
            X, y, X_val, y_val, validation_size=self.validation_size, random_state=self.random_state)
        torch.manual_seed(self.random_state)
        rng = np.random.default_rng(self.random_state)
        source, gguf_file = checkpoint_source(self.model)
        self.tokenizer_ = load_tokenizer(source, gguf_file)
        self.tokenizer_.padding_side = "right"
        labels = [str(c) for c in self.classes_.tolist()]
        model = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)}, dtype=torch.float32,
            **({"gguf_file": gguf_file} if gguf_file else {}))
        model.config.pad_token_id = self.tokenizer_.pad_token_id
        self.device_ = resolve_device(self.device)
        self.model_ = model.to(self.device_)
        self.max_length_ = self._resolve_max_length()
        train_ids = self._encode(train_texts)
        steps_per_epoch = math.ceil(len(train_texts) / self.batch_size)
        total_steps = steps_per_epoch * self.epochs
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        groups = [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        try:  # the fused kernel is several times faster on CPU and GPU alike
            optimizer = torch.optim.AdamW(groups, lr=self.learning_rate, fused=True)
        except (RuntimeError, TypeError):
            optimizer = torch.optim.AdamW(groups, lr=self.learning_rate)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total_steps), total_steps)
        self.val_scores_, self.train_losses_ = [], []
        best_state, best_score = None, -math.inf
        for epoch in range(self.epochs):
            model.train()
            losses = []
            batches = length_batches([len(ids) for ids in train_ids], self.batch_size, rng)
            for batch in tqdm(batches, desc=f"finetune epoch {epoch + 1}/{self.epochs}",
                              disable=not self.show_progress_bar, leave=False):
                inputs = self._collate([train_ids[i] for i in batch])
                output = model(**inputs, labels=torch.as_tensor(train_codes[batch], device=self.device_))
                output.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(output.loss.detach()))
            val_score = score(val_codes, self._logits(val_texts).argmax(axis=1), self.metric)
            self.val_scores_.append(val_score)
            self.train_losses_.append(float(np.mean(losses)))
            if self.show_progress_bar:
                tqdm.write(f"[finetune] epoch {epoch + 1}: train loss {self.train_losses_[-1]:.4f}, "
                           f"validation {self.metric} {val_score:.4f}")
            if val_score > best_score:
                best_score, self.best_epoch_ = val_score, epoch + 1
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        model.load_state_dict(best_state)
        model.eval()
        self.val_score_ = best_score
        self.n_trainable_params_ = count_parameters(model)
        self.n_features_ = self.n_trainable_params_
        self.exit_layer_ = int(getattr(model.config, "num_hidden_layers", 0) or getattr(model.config, "n_layer", 0))
        self.checkpoint_dir_ = self._save() if self.output_dir is not None else None
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _resolve_max_length(self) -> int:
        limits = [getattr(self.tokenizer_, "model_max_length", None),
                  getattr(self.model_.config, "max_position_embeddings", None)]
        limit = min([v for v in limits if isinstance(v, int) and 0 < v < 1_000_000] or [512])
        return min(limit, self.max_length or 512)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer_(texts, truncation=True, max_length=self.max_length_, padding=False)["input_ids"]

    def _collate(self, ids: list[list[int]]) -> dict:
        padded = self.tokenizer_.pad({"input_ids": ids}, return_tensors="pt")
        return {k: v.to(self.device_) for k, v in padded.items() if k in ("input_ids", "attention_mask")}

    def _save(self) -> str:
        directory = Path(self.output_dir)
        directory.mkdir(parents=True, exist_ok=True)
        self.model_.save_pretrained(directory)
        self.tokenizer_.save_pretrained(directory)
        summary = {"base_model": str(self.model), "classes": self.classes_.tolist(), "best_epoch": self.best_epoch_,
                   "val_scores": self.val_scores_, "metric": self.metric, "max_length": self.max_length_,
                   "learning_rate": self.learning_rate, "epochs": self.epochs, "batch_size": self.batch_size,
                   "random_state": self.random_state}
        (directory / "stc_finetune.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        return str(directory)

    @torch.inference_mode()
    def _logits(self, texts: list[str]) -> np.ndarray:
        self.model_.eval()
        ids = self._encode(texts)
        logits = np.zeros((len(texts), len(self.classes_)), dtype=np.float32)
        batches = length_batches([len(i) for i in ids], self.batch_size * 2)
        for batch in tqdm(batches, desc="finetune predict", leave=False,
                          disable=not self.show_progress_bar or len(texts) < 256):
            output = self.model_(**self._collate([ids[i] for i in batch]))
            logits[batch] = output.logits.float().cpu().numpy()
        return logits

    def _class_logits(self, X) -> np.ndarray:
        """The head's logits (n_texts, n_classes), after the fitted check."""
        check_is_fitted(self, "model_")
        return self._logits(check_texts(X, "X"))

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's shapes: (n_texts,) for two classes (the logit of ``classes_[1]`` minus that of
        ``classes_[0]``: positive means ``classes_[1]``), else the logits (n_texts, n_classes)."""
        logits = self._class_logits(X)
        return logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        logits = self._class_logits(X)
        logits = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(logits)
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        codes = self._class_logits(X).argmax(axis=1)
        return self.classes_[codes]
