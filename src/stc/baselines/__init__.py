"""Baselines STC is measured against. They import the core; the core never imports them."""

from .embedding import EmbeddingClassifier, native_pooling

__all__ = ["EmbeddingClassifier", "native_pooling"]
