"""Which predictor serves a model directory: torch (an ``stc fit`` model) or ONNX (an ``stc export``)."""

from __future__ import annotations

from .bundle import Bundle, is_bundle
from .predictor import RUNTIMES, BundlePredictor, Predictor, TorchPredictor

__all__ = ["load_predictor"]


def load_predictor(model_dir, *, runtime: str = "torch", device: str | None = None,
                   threads: int | None = None) -> Predictor:
    """The predictor of a saved model (torch: an ``stc fit`` directory, or an ``stc bundle`` one) or of an export
    (onnx: ``stc export``).

    ``threads``: intra-op threads of the runtime (torch: process-wide, ``torch.set_num_threads``); None keeps the
    runtime's default (one per core).
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if runtime == "torch" and is_bundle(model_dir):  # many tasks, one pass
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return BundlePredictor(Bundle.load(model_dir), device=device)
    if runtime == "torch":
        from . import load

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        return TorchPredictor(load(model_dir, device=device))
    if runtime == "onnx":
        try:
            from .export import OnnxPredictor
        except ImportError as error:
            raise ImportError(f"--runtime onnx needs the onnx extra ({error.name} is missing): "
                              f"pip install 'sparsify-then-classify[onnx]'") from None
        return OnnxPredictor(model_dir, threads=threads)
    raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
