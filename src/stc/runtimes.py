"""Which predictor serves a model directory: torch (an ``stc fit`` model) or ONNX (an ``stc export``)."""

from __future__ import annotations

from .predictor import RUNTIMES, Predictor, TorchPredictor

__all__ = ["load_predictor"]


def load_predictor(model_dir, *, runtime: str = "torch", device: str | None = None) -> Predictor:
    """The predictor of a saved model (torch: an ``stc fit`` directory) or of an export (onnx: ``stc export``)."""
    if runtime == "torch":
        from . import load

        return TorchPredictor(load(model_dir, device=device))
    if runtime == "onnx":
        try:
            from .export import OnnxPredictor
        except ImportError as error:
            raise ImportError(f"--runtime onnx needs the onnx extra ({error.name} is missing): "
                              f"pip install 'sparsify-then-classify[onnx]'") from None
        return OnnxPredictor(model_dir)
    raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
