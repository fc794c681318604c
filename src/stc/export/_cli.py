"""``stc export MODEL_DIR --format onnx [--quantize int8] --out DIR``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def _cmd_export(args) -> int:
    from .. import load

    try:
        from . import export_onnx
    except ImportError as error:
        raise ImportError(f"stc export needs the onnx extra ({error.name} is missing): "
                          f"pip install 'sparsify-then-classify[onnx]'") from None
    from ..bundle import Bundle, is_bundle

    # a bundle: one graph for the union of its tasks' neurons, each task's head beside it
    model = Bundle.load(args.model_dir) if is_bundle(args.model_dir) else load(args.model_dir, device="cpu")
    out = export_onnx(model, args.out, quantize=None if args.quantize == "none" else args.quantize)
    print(f"exported {args.model_dir} to {out} ({args.format}, "
          f"{'fp32' if args.quantize == 'none' else args.quantize})", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser("export", help="export a saved model or bundle to ONNX (backbone to the exit layer + kept "
                                           "neurons; a bundle's tasks share one graph)")
    export.add_argument("model_dir")
    export.add_argument("--format", choices=("onnx",), default="onnx")
    export.add_argument("--quantize", choices=("none", "int8", "int8-ffn-out"), default="none",
                        help="onnxruntime's dynamic int8 quantisation of every MatMul (int8) or of the FFN output "
                             "projections only (int8-ffn-out: slower, loses less accuracy)")
    export.add_argument("--out", required=True, help="directory to write the export into")
    export.set_defaults(handler=_cmd_export)
