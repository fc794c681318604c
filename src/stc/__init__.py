"""stc: Sparsify-then-Classify — text classifiers read from a transformer's internal neurons."""

__version__ = "0.1.0"
