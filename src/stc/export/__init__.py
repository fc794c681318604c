"""Export a fitted model to ONNX (``stc export``) and run the export (``--runtime onnx``); needs the ``onnx`` extra.

The core never imports this package.
"""

from ._onnx import QUANTIZATIONS, OnnxPredictor, export_onnx

__all__ = ["export_onnx", "OnnxPredictor", "QUANTIZATIONS"]
