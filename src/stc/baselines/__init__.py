"""Baselines STC is measured against. They import the core; the core never imports them."""

from .embedding import EmbeddingClassifier, native_pooling

__all__ = ["EmbeddingClassifier", "native_pooling"]
from .finetune import FineTuneClassifier  # noqa: E402
from .icl import ICLClassifier, label_log_probs  # noqa: E402
from .setfit_peer import SetFitClassifier, setfit_available  # noqa: E402

__all__ += ["FineTuneClassifier", "ICLClassifier", "label_log_probs", "SetFitClassifier", "setfit_available"]
