"""Export a fitted STCClassifier to ONNX (optionally int8) and run the export with onnxruntime.

The exported directory holds ``model.onnx`` (texts' token ids -> kept-neuron features), ``tokenizer/``, the
model's head as ``head.json`` + ``head.safetensors`` (``LinearHead.to_files``) and ``stc_onnx.json`` (kept
neurons, how texts are tokenised, the backbone's name and sha256, and the sha256 of the graph, of the tokenizer
files and of the head's arrays, checked on load). Exports of format version 1 held the head's arrays in
``stc_onnx.json`` itself; they still load (``_head_of_version_1``). A bundle's export (format version 3) is one graph
computing the union of its tasks' kept neurons, with each task's head under ``tasks/<name>/`` and the positions of
its features among the graph's: K tasks, one pass.

The head (scaler + logistic regression, or the MLP head's hidden layer and output, with the temperature when the
model has one) is applied in numpy beside the graph, not inside it: it is the model's own ``LinearHead``, the one every runtime uses, so probabilities are
made in one place;
dynamic int8 quantisation then touches only the backbone's matrix products, never the classifier's weights; and
it costs one (n_texts, n_features) product, nothing beside the backbone.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .. import __version__
from .._files import replace_directory
from .._validation import check_inputs
from ..extract import takes_segment_ids, tokenize_with
from ..head import LinearHead, labels_from_json
from ..predictor import model_metadata
from ._graph import FeatureGraph

__all__ = ["export_onnx", "OnnxPredictor", "FORMAT", "QUANTIZATIONS"]

FORMAT = "stc-onnx"
FORMAT_VERSION = 2  # 2: the head in head.json + head.safetensors (1: its arrays as JSON lists in stc_onnx.json)
BUNDLE_FORMAT_VERSION = 3  # 3: a bundle's graph and its tasks' heads under tasks/<name>/
READABLE_VERSIONS = (1, 2, 3)
#: int8: every MatMul weight of the graph, per output channel; int8-ffn-out: only the FFN output projections, the
#: matrix products whose outputs are never read as features (the others compute the kept neurons themselves, and
#: the head's standardisation magnifies their rounding: see benchmarks/README.md).
QUANTIZATIONS = (None, "int8", "int8-ffn-out")
_DOCUMENT = "stc_onnx.json"
_GRAPH = "model.onnx"
_TOKENIZER = "tokenizer"
_HEAD = "head"  # head.json + head.safetensors
_TASKS = "tasks"  # a bundle's: tasks/<name>/head.*
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # as stc.bundle names tasks: no path in a name
_CHECK_TEXTS = ["a first short sentence to check the export", "another one, a little longer, with punctuation!",
                "three"]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tokenizer_sha256(directory: Path) -> str:
    """sha256 over the names and bytes of every tokenizer file: any change to the tokenizer changes it."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(directory).as_posix()}|".encode())
        digest.update(_file_sha256(path).encode())
    return digest.hexdigest()


def export_onnx(model, out, *, quantize: str | None = None, opset_version: int | None = None) -> Path:
    """Write a fitted STCClassifier (its ``readout_``), or a ``stc.Bundle`` of several, as an ONNX directory at
    ``out``; ``quantize="int8"`` applies dynamic int8 quantisation.

    A bundle is one graph computing the union of its tasks' kept neurons (one pass, to the deepest exit layer), and
    each task's head beside it (``tasks/<name>/head.*``) with the positions of its features among the graph's. The
    fp32 graph is checked against the torch features of a few texts before anything is written.
    """
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    tasks, kept, backbone, token_budget = _plan(model)
    reference = next(iter(tasks.values()))
    graph = FeatureGraph(backbone, kept).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        gap = _write_graph(graph, backbone, reference.extraction.max_length, partial, quantize, opset_version,
                           pairs=reference.extraction.pairs)
        backbone.tokenizer.save_pretrained(partial / _TOKENIZER)
        document = {"format": FORMAT, "format_version": FORMAT_VERSION, "stc_version": __version__,
                    "quantization": quantize, "kept_columns": {key: columns.tolist() for key, columns in kept.items()},
                    "extraction": reference.extraction_record(), "token_budget": int(token_budget),
                    "backbone": reference.backbone.record(), "onnx_sha256": _file_sha256(partial / _GRAPH),
                    "tokenizer_sha256": _tokenizer_sha256(partial / _TOKENIZER),
                    "export_check_max_feature_gap": gap}
        if None in tasks:  # one model: its head beside the graph
            document.update(_write_head(reference, partial, _HEAD))
        else:  # a bundle: each task's head, and where its features are among the graph's
            document.update(format_version=BUNDLE_FORMAT_VERSION, exit_layer=int(graph.deepest), tasks={
                name: {**_write_head(readout, partial / _TASKS / name, _HEAD), "positions": positions.tolist()}
                for name, readout, positions in _task_positions(tasks, kept)})
        (partial / _DOCUMENT).write_text(json.dumps(document, indent=1), encoding="utf-8")
        _replace_directory(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _plan(model):
    """(readouts by task name, None for a single model; the kept columns the graph computes; the fitted backbone,
    checked, on CPU in float32; the token budget)."""
    from ..bundle import Bundle

    if isinstance(model, Bundle):
        tasks, kept, token_budget = dict(model.tasks), model.union_columns, 8192
        backbone = model.load_backbone(device="cpu", dtype="float32")
    else:
        check_is_fitted(model, "readout_")
        readout = model.readout_
        tasks, token_budget = {None: readout}, model.token_budget
        kept = {key: np.array(columns, dtype=np.int64) for key, columns in readout.kept_columns.items()}
        # the backbone the model was fitted on (weights sha256), which the kept neurons fit, else a ValueError
        backbone = readout.load_backbone(model=model.model, device="cpu", dtype="float32",
                                         trust_remote_code=model.trust_remote_code)
    if next(iter(tasks.values())).extraction.windows:
        raise ValueError("this model was fitted with windows=True; ONNX export supports only models that truncate "
                         "texts (windows=False): merging windows is not in the graph")
    return tasks, kept, backbone, token_budget


def graph_inputs(tokens, rows: np.ndarray, pad_id: int, segment_ids: bool) -> dict[str, torch.Tensor]:
    """The graph's inputs for these rows of tokenised texts: token ids and attention mask, and the segment ids of
    text pairs where the graph takes them."""
    ids, mask = tokens.padded(rows, pad_id)
    inputs = {"input_ids": ids, "attention_mask": mask}
    types = tokens.padded_type_ids(rows) if segment_ids else None
    if types is not None:
        inputs["token_type_ids"] = types
    return inputs


def _write_graph(graph: FeatureGraph, backbone, max_length: int, partial: Path, quantize: str | None,
                 opset_version: int | None, pairs: bool = False) -> float:
    """Export the graph into ``partial`` (quantised if asked), checked against torch first; the largest relative
    feature gap. A graph of text pairs takes the pairs' segment ids too where the model does."""
    checks = list(zip(_CHECK_TEXTS, reversed(_CHECK_TEXTS))) if pairs else _CHECK_TEXTS
    tokens = tokenize_with(backbone.tokenizer, checks, max_length=max_length)
    inputs = graph_inputs(tokens, np.arange(len(checks)), backbone.tokenizer.pad_token_id,
                          takes_segment_ids(backbone.model))
    fp32_path = partial / ("model.fp32.onnx" if quantize else _GRAPH)
    _export_graph(graph, inputs, fp32_path, opset_version)
    with torch.inference_mode():
        torch_features = graph(**inputs).numpy()
    onnx_features = _session(fp32_path).run(None, {name: value.numpy() for name, value in inputs.items()})[0]
    # Features, not probabilities: a kept neuron that is nearly constant over the training texts has a tiny scale
    # (MiniLM's [CLS] FFN neurons: down to 1e-10), so float32 rounding alone, in torch too, moves its standardised
    # value and the probabilities; the graph is right when its features are.
    gap = float((np.abs(onnx_features - torch_features) / (1.0 + np.abs(torch_features))).max())
    if not gap <= 1e-4:
        raise ValueError(f"the exported graph's features differ from torch's by {gap:.2e} (relative, > 1e-4)")
    if quantize is not None:
        _quantize(fp32_path, partial / _GRAPH, quantize, ffn_shape=(backbone.ffn_size, backbone.hidden_size))
        fp32_path.unlink()
    return gap


def _write_head(readout, directory: Path, stem: str) -> dict:
    """Write a readout's head into ``directory``; the document fields that describe it."""
    directory.mkdir(parents=True, exist_ok=True)
    readout.head.to_files(directory, stem)
    return {"head_sha256": _file_sha256(directory / f"{stem}.safetensors"), "kept_neurons": readout.neuron_names,
            "configuration": readout.configuration_record(), "exit_layer": readout.exit_layer}


def _task_positions(tasks: dict, kept: dict[str, np.ndarray]):
    """(name, readout, positions of its features among the graph's) of each task: the graph's features are the
    union's columns, key after key."""
    offsets = dict(zip(kept, np.cumsum([0] + [len(columns) for columns in kept.values()])))
    for name, readout in tasks.items():
        yield name, readout, np.concatenate([offsets[key] + np.searchsorted(kept[key], columns)
                                             for key, columns in readout.kept_columns.items()]).astype(np.int64)


def _export_graph(graph: FeatureGraph, inputs: dict[str, torch.Tensor], path: Path,
                  opset_version: int | None) -> None:
    """torch.onnx's dynamo exporter, batch and sequence length dynamic, weights inside the one file; the inputs
    named as ``inputs`` names them (token ids, attention mask, and segment ids for pairs)."""
    dynamic = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter warns about torchvision ops and its own internals
        torch.onnx.export(graph, tuple(inputs.values()), str(path), dynamo=True, external_data=False,
                          input_names=list(inputs), output_names=["features"],
                          dynamic_axes={**{name: dynamic for name in inputs}, "features": {0: "batch"}},
                          opset_version=opset_version, verbose=False)


def _quantize(source: Path, target: Path, quantize: str, ffn_shape: tuple[int, int]) -> None:
    """onnxruntime's dynamic quantisation (int8 weights, activations quantised per batch) of the chosen MatMuls."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = None
    if quantize == "int8-ffn-out":  # the exporter stores a Linear's weight as (in, out): (ffn, hidden) here
        graph = onnx.load(str(source), load_external_data=False).graph
        shapes = {initializer.name: tuple(initializer.dims) for initializer in graph.initializer}
        nodes = [node.name for node in graph.node
                 if node.op_type == "MatMul" and len(node.input) > 1 and shapes.get(node.input[1]) == ffn_shape]
        if not nodes:
            raise ValueError(f"no FFN output projection (a MatMul with a {ffn_shape} weight) found to quantise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes)


def _replace_directory(partial: Path, out: Path) -> None:
    """Rename the finished export into place; an existing directory is replaced only if it is an stc export."""
    replace_directory(partial, out, marker=_DOCUMENT, what="an stc ONNX export")


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


class OnnxPredictor:
    """An exported directory run with onnxruntime: the graph gives features, ``LinearHead`` the probabilities.

    Loading refuses a directory whose graph or tokenizer files are not the ones exported (sha256 mismatch), and,
    when ``backbone_sha256`` is given, one exported from another backbone.
    """

    runtime = "onnx"

    def __init__(self, directory, *, backbone_sha256: str | None = None, threads: int | None = None):
        directory = Path(directory)
        path = directory / _DOCUMENT
        if not path.is_file():
            raise ValueError(f"{directory} is not an stc ONNX export: {_DOCUMENT} is missing (make one with "
                             f"`stc export MODEL_DIR --format onnx --out DIR`)")
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != FORMAT \
                or document.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(f"{path} is not an stc ONNX export of format version {READABLE_VERSIONS}")
        graph_path, tokenizer_dir = directory / _GRAPH, directory / _TOKENIZER
        if not graph_path.is_file() or _file_sha256(graph_path) != document.get("onnx_sha256"):
            raise ValueError(f"{graph_path} is missing or is not the graph that was exported (sha256 mismatch)")
        if not tokenizer_dir.is_dir() or _tokenizer_sha256(tokenizer_dir) != document.get("tokenizer_sha256"):
            raise ValueError(f"{tokenizer_dir} is missing or is not the tokenizer the model was exported with "
                             f"(sha256 mismatch): a graph read through another tokenizer gives wrong answers")
        backbone = document.get("backbone") or {}
        if backbone_sha256 is not None and backbone.get("weights_sha256") != backbone_sha256:
            raise ValueError(f"{directory} was exported from backbone weights sha256 "
                             f"{str(backbone.get('weights_sha256'))[:12]}…, not {backbone_sha256[:12]}…")
        self._read_heads(directory, document, path)
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.document = document
        self.max_length = int(document["extraction"]["max_length"])
        self.pairs = document["extraction"].get("pairs") is True  # the model reads text pairs
        self.token_budget = int(document.get("token_budget", 8192))
        self.session = _session(graph_path, threads)

    def _read_heads(self, directory: Path, document: dict, path: Path) -> None:
        """The head (``head``), or for a bundle's export each task's (``heads``, and ``positions``: where its
        features are among the graph's), each refused unless its arrays are the ones exported."""
        self.head, self.heads, self.positions = None, None, None
        self.n_features = sum(len(columns) for columns in (document.get("kept_columns") or {}).values())
        if document["format_version"] == BUNDLE_FORMAT_VERSION:
            tasks = document.get("tasks")
            if not isinstance(tasks, dict) or not tasks or not all(map(_TASK_NAME.match, tasks)):
                raise ValueError(f"{path}: 'tasks' must name the bundle's tasks (letters, digits, _ . -)")
            self.heads = {name: _head(directory / _TASKS / name, task) for name, task in tasks.items()}
            self.positions = {name: np.asarray(task.get("positions"), dtype=np.int64) for name, task in tasks.items()}
            for name, head in self.heads.items():
                positions = self.positions[name]
                if positions.shape != (head.n_features,) or positions.min() < 0 or positions.max() >= self.n_features:
                    raise ValueError(f"{path}: task {name!r} reads {positions.shape} positions of the graph's "
                                     f"{self.n_features} features for a head over {head.n_features}")
            return
        self.head = _head_of_version_1(document, path) if document["format_version"] == 1 else _head(directory, document)
        self.kept_neurons = list(document.get("kept_neurons") or [])
        self.n_features = self.head.n_features
        if len(self.kept_neurons) != self.head.n_features:
            raise ValueError(f"{path}: {len(self.kept_neurons)} kept neuron names for a head over "
                             f"{self.head.n_features} features")

    def features(self, texts: list[str]) -> np.ndarray:
        """Kept-neuron features (n_texts, n_features) in input order; batches sorted by length, as extraction."""
        texts = check_inputs(texts, "texts", pairs=self.pairs)
        tokens = tokenize_with(self.tokenizer, texts, max_length=self.max_length)
        out = np.empty((len(texts), self.n_features), dtype=np.float32)
        segment_ids = "token_type_ids" in {graph_input.name for graph_input in self.session.get_inputs()}
        for rows in tokens.batches(self.token_budget):
            inputs = graph_inputs(tokens, rows, self.tokenizer.pad_token_id, segment_ids)
            out[tokens.text_index[rows]] = self.session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
        return out

    def predict_proba(self, texts: list[str]) -> np.ndarray | dict[str, np.ndarray]:
        """Class probabilities (n_texts, n_classes): the graph's features through the head; for a bundle's export
        each task's, by name, from the one graph."""
        features = self.features(texts)
        if self.heads is not None:
            return {name: head.probabilities(features[:, self.positions[name]]) for name, head in self.heads.items()}
        return self.head.probabilities(features)

    def explain(self, text: str, *, top_k: int = 10) -> dict:
        if not isinstance(text, tuple if self.pairs else str):
            raise TypeError(f"text must be {'a (text_a, text_b) tuple' if self.pairs else 'a string'}, got "
                            f"{type(text).__name__}")
        features = self.features([text])[0]
        if self.heads is not None:
            tasks = self.document["tasks"]
            return {"text": text, "tasks": {name: head.explain(features[self.positions[name]],
                                                               tasks[name]["kept_neurons"], top_k=top_k)
                                            for name, head in self.heads.items()}}
        return {"text": text, **self.head.explain(features, self.kept_neurons, top_k=top_k)}

    def metadata(self) -> dict:
        document = self.document
        if self.heads is not None:
            return {"runtime": self.runtime, "tasks": {
                        name: model_metadata(self.runtime, head, document["tasks"][name].get("configuration", {}),
                                             int(document["tasks"][name].get("exit_layer", 0)), head.n_features,
                                             document.get("backbone", {}))
                        for name, head in self.heads.items()},
                    "exit_layer": document.get("exit_layer"), "n_union_neurons": self.n_features,
                    "quantization": document.get("quantization")}
        return {**model_metadata(self.runtime, self.head, document.get("configuration", {}),
                                 int(document.get("exit_layer", 0)), self.head.n_features,
                                 document.get("backbone", {})),
                "quantization": document.get("quantization")}


def _head(directory: Path, document: dict) -> LinearHead:
    """The exported head, refused unless its arrays are the ones exported (sha256)."""
    arrays = directory / f"{_HEAD}.safetensors"
    if not arrays.is_file() or _file_sha256(arrays) != document.get("head_sha256"):
        raise ValueError(f"{arrays} is missing or is not the head that was exported (sha256 mismatch)")
    return LinearHead.from_files(directory, _HEAD)


def _head_of_version_1(document: dict, path: Path) -> LinearHead:
    """The head of a format-1 export: classes as a plain list and the arrays as JSON lists in ``stc_onnx.json``."""
    head = document.get("head")
    try:
        if not isinstance(head, dict) or not isinstance(head.get("classes"), list):
            raise ValueError("the head or its classes are missing")
        classes = head["classes"]
        kinds = {type(c).__name__ for c in classes}
        labels = labels_from_json({"type": kinds.pop() if len(kinds) == 1 else "mixed", "values": classes})
        return LinearHead(classes=labels, temperature=head.get("temperature", 1.0),
                          **{name: np.asarray(head.get(name), dtype=np.float64)
                             for name in ("mean", "scale", "coef", "intercept")})
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: the head is not valid ({error})") from None
