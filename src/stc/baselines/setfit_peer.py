"""SetFit on the same backbone: contrastive fine-tuning of the sentence embedding, then a logistic-regression head.

An optional peer (``pip install 'sparsify-then-classify[setfit]'``): what many users would pick instead of STC.
SetFit samples sentence pairs; ``max_steps`` caps the contrastive phase, which otherwise grows with
``num_iterations`` x the number of training texts. ``save_body`` writes the tuned body as a plain model directory,
so that STC can read its neurons: ``SetFitClassifier(...).fit(X, y).save_body("tuned")``, then
``STCClassifier(model="tuned")`` or ``stc fit --model tuned``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted

from .._metrics import check_metric, score
from .._validation import check_integers, check_texts
from ..backbone import resolve_device
from .._estimator import fit_split, text_estimator_tags
from .finetune import checkpoint_source, count_parameters

__all__ = ["SetFitClassifier", "setfit_available"]


def setfit_available() -> str | None:
    """None when SetFit can be used here, else the reason it cannot."""
    try:
        import setfit  # noqa: F401
        from setfit import SetFitModel, Trainer, TrainingArguments  # noqa: F401
    except ImportError as error:
        return (f"SetFit is not usable here ({error}); install it with "
                f"pip install 'sparsify-then-classify[setfit]'")
    return None


class SetFitClassifier(ClassifierMixin, BaseEstimator):
    """SetFit (Tunstall et al. 2022) on a backbone: contrastive pairs fine-tune the body, a logistic head classifies.

    Parameters
    ----------
    model : alias (``minilm``, ``smollm2``), local directory or hub id; a non-sentence-transformers model gets
        mean pooling.
    num_iterations : pairs drawn per training text; max_steps : cap on contrastive steps (None = no cap).
    epochs, batch_size, body_learning_rate : the contrastive phase.
    max_length : tokens per text (None = the model's sentence-transformers limit).
    """

    def __init__(self, model: str = "minilm", *, num_iterations: int = 5, max_steps: int | None = None,
                 epochs: int = 1, batch_size: int = 16, body_learning_rate: float = 2e-5,
                 max_length: int | None = None, metric: str = "accuracy", validation_size: float = 0.2,
                 device: str = "auto", random_state: int = 42, show_progress_bar: bool = True):
        self.model = model
        self.num_iterations = num_iterations
        self.max_steps = max_steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.body_learning_rate = body_learning_rate
        self.max_length = max_length
        self.metric = metric
        self.validation_size = validation_size
        self.device = device
        self.random_state = random_state
        self.show_progress_bar = show_progress_bar

    def __sklearn_tags__(self) -> Tags:
        return text_estimator_tags(super().__sklearn_tags__(), transformer=False)

    def fit(self, X, y, *, X_val=None, y_val=None) -> SetFitClassifier:
        """Contrastive fine-tuning on X, y, then the head; the validation score is reported, not searched."""
        reason = setfit_available()
        if reason is not None:
            raise ImportError(reason)
        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        started = time.perf_counter()
        check_metric(self.metric)
        check_integers(self, ("num_iterations", "epochs", "batch_size"))
        check_integers(self, ("max_steps",), none_allowed=True)
        self.classes_, train_texts, train_codes, val_texts, val_codes = fit_split(
            X, y, X_val, y_val, validation_size=self.validation_size, random_state=self.random_state)
        source, gguf_file = checkpoint_source(self.model)
        if gguf_file is not None:
            raise ValueError(f"SetFit cannot load the GGUF file of {self.model!r} directly; load it once with "
                             f"stc.load_backbone({self.model!r}) so that its de-quantised copy is cached")
        self.model_ = SetFitModel.from_pretrained(source, device=str(resolve_device(self.device)))
        if self.max_length is not None:
            self.model_.model_body.max_seq_length = self.max_length
        with tempfile.TemporaryDirectory(prefix="stc-setfit-") as scratch:
            args = TrainingArguments(output_dir=scratch, batch_size=self.batch_size, num_epochs=self.epochs,
                                     num_iterations=self.num_iterations,
                                     max_steps=self.max_steps if self.max_steps is not None else -1,
                                     body_learning_rate=self.body_learning_rate, seed=self.random_state,
                                     report_to="none", show_progress_bar=self.show_progress_bar,
                                     save_strategy="no", logging_strategy="no")
            trainer = Trainer(model=self.model_, args=args,
                              train_dataset=Dataset.from_dict({"text": train_texts,
                                                               "label": train_codes.tolist()}))
            if not self.show_progress_bar:  # SetFit's flag does not reach the inner sentence-transformers trainer
                from transformers import PrinterCallback, ProgressCallback
                for callback in (ProgressCallback, PrinterCallback):
                    trainer.st_trainer.remove_callback(callback)
            trainer.train()
        self.val_score_ = score(val_codes, self._codes(val_texts), self.metric)
        self.n_trainable_params_ = count_parameters(self.model_.model_body) + int(
            np.asarray(self.model_.model_head.coef_).size + np.asarray(self.model_.model_head.intercept_).size)
        self.n_features_ = self.n_trainable_params_
        config = self.model_.model_body[0].auto_model.config
        self.exit_layer_ = int(getattr(config, "num_hidden_layers", 0))
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def save_body(self, directory) -> str:
        """Write the contrastively tuned body as a plain Hugging Face model directory, for STC to read.

        The transformer's ``save_pretrained`` and its tokenizer's go to ``directory``; the logistic head is not
        saved. ``stc.STCClassifier(model=directory)`` (or ``stc fit --model directory``) then reads the tuned
        body's neurons: ``SetFitClassifier(...).fit(X, y).save_body("tuned")``. Fitted on the texts the body was
        tuned on, STC's ``expected_score_`` is not an honest estimate (the body saw the texts its folds hold out:
        0.96 against 0.53 on test in ``benchmarks/bench_setfit_body.py``); judge such a model on held-out texts.

        Parameters
        ----------
        directory : str or path-like
            Where to write; created if absent. An existing directory must be empty or already hold a model
            (a ``config.json``), which is overwritten.

        Returns
        -------
        str
            ``directory``, as a string.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        FileExistsError
            When ``directory`` is a file, or a non-empty directory that holds no model.
        """
        check_is_fitted(self, "model_")
        target = Path(directory)
        if target.exists() and not target.is_dir():
            raise FileExistsError(f"cannot save the SetFit body to {str(target)!r}: it is a file")
        if target.is_dir() and any(target.iterdir()) and not (target / "config.json").is_file():
            raise FileExistsError(f"refusing to write the SetFit body into {str(target)!r}: it is not empty and "
                                  f"holds no model (no config.json); give an empty or new directory")
        target.mkdir(parents=True, exist_ok=True)
        body = self.model_.model_body
        body[0].auto_model.save_pretrained(str(target))
        body.tokenizer.save_pretrained(str(target))
        return str(target)

    def _codes(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model_.predict(texts, as_numpy=True, batch_size=self.batch_size * 4,
                                              show_progress_bar=False)).astype(int)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.asarray(self.model_.predict_proba(check_texts(X, "X"), as_numpy=True,
                                                    batch_size=self.batch_size * 4, show_progress_bar=False))

    def predict(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.classes_[self._codes(check_texts(X, "X"))]
