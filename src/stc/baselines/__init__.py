"""Baselines STC is measured against. They import the core; the core never imports them."""

from .embedding import EmbeddingClassifier, native_pooling
from .finetune import FineTuneClassifier
from .icl import ICLClassifier, label_log_probs
from .setfit_peer import SetFitClassifier, setfit_available

__all__ = ["EmbeddingClassifier", "native_pooling", "FineTuneClassifier", "ICLClassifier", "label_log_probs",
           "SetFitClassifier", "setfit_available"]
