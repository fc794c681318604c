"""stc: Sparsify-then-Classify — text classifiers read from a transformer's internal neurons."""

__version__ = "0.1.0"

from ._persist import load  # noqa: E402
from .backbone import load_backbone  # noqa: E402
from .classifier import STCClassifier  # noqa: E402

__all__ = ["STCClassifier", "load", "load_backbone", "__version__"]
