"""stc: Sparsify-then-Classify — text classifiers read from a transformer's internal neurons."""

from ._version import __version__
from .backbone import load_backbone
from .bundle import Bundle
from .classifier import STCClassifier
from .readout import Readout


def load(directory, *, check_backbone: bool = True, device: str | None = None,
         trust_remote_code: bool = False) -> STCClassifier:
    """``STCClassifier.load``: a model saved with ``STCClassifier.save``; a damaged file or a changed backbone is a
    clear error. ``device`` overrides the saved one; ``check_backbone`` (default) loads the backbone and checks its
    weights hash. A model file cannot switch on ``trust_remote_code`` by itself: the caller must pass it."""
    return STCClassifier.load(directory, check_backbone=check_backbone, device=device,
                              trust_remote_code=trust_remote_code)


__all__ = ["STCClassifier", "Readout", "Bundle", "load", "load_backbone", "__version__"]
