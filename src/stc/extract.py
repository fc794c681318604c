"""One forward pass per batch: hooks read every layer's residual stream and FFN neurons, pooled over tokens.

Token-level activations never leave a batch: each hook pools what it sees at once (mean, max, first, last real
token under the attention mask), and texts longer than the model's window are cut into overlapping windows whose
pooled statistics are merged per text. The forward pass stops after the deepest block anything needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .backbone import Backbone

__all__ = ["POOLINGS", "REPRESENTATIONS", "feature_key", "parse_key", "pool_tokens", "all_keys",
           "default_poolings", "TokenizedTexts", "tokenize", "tokenize_with", "attach_site_hooks", "hooked_forward", "check_layers",
           "token_activations_of_windows", "extract_features"]

POOLINGS = ("mean", "max", "first", "last")
REPRESENTATIONS = ("hidden", "ffn")
#: A batch's rows are padded by at most this fraction of their own length (or ``_PAD_SLACK`` tokens): a padded
#: token costs a real one, while one more forward costs about 30 tokens on a CPU (MiniLM; benchmarks/README.md,
#: "Serving"), so 64 mixed MR sentences ran about 2x faster as ~5 forwards than as one padded to the longest.
_PAD_FRACTION = 0.25
_PAD_SLACK = 8


def feature_key(representation: str, layer: int, pooling: str) -> str:
    """The name of one pooled array, e.g. ``ffn.L3.mean``; a neuron adds its index: ``ffn.L3.mean.1021``."""
    return f"{representation}.L{layer}.{pooling}"


def parse_key(key: str) -> tuple[str, int, str]:
    representation, layer, pooling = key.split(".")
    if representation not in REPRESENTATIONS or pooling not in POOLINGS or not layer.startswith("L"):
        raise ValueError(f"not a feature key: {key!r} (expected e.g. 'ffn.L3.mean')")
    return representation, int(layer[1:]), pooling


def default_poolings(backbone: Backbone) -> tuple[str, ...]:
    """mean and max, plus the natural single token: the last for decoders, the first ([CLS], <s>) for encoders."""
    return ("mean", "max", "last") if backbone.is_decoder else ("mean", "max", "first")


def all_keys(num_layers: int, representations: Sequence[str], poolings: Sequence[str]) -> list[str]:
    """Every key: hidden layers 0..L (0 = embeddings), FFN layers 1..L."""
    keys = []
    for representation in representations:
        first = 0 if representation == "hidden" else 1
        keys += [feature_key(representation, layer, pooling) for layer in range(first, num_layers + 1) for pooling in poolings]
    return keys


# --- pooling: the one implementation, used by extraction, inference and the tests' checks -----------------------

def _first_index(mask: torch.Tensor) -> torch.Tensor:
    return mask.int().argmax(dim=1)


def _last_index(mask: torch.Tensor) -> torch.Tensor:
    return mask.shape[1] - 1 - mask.int().flip(1).argmax(dim=1)


def _token_stat(x: torch.Tensor, mask: torch.Tensor, stat: str, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Per row of x (B, T, F): masked 'sum', 'max', 'first' or 'last' real token (left or right padding), of the
    ``columns`` only (long tensor; None: all). A max reduces only those (exact on any subset; a model keeps a few of
    1,536 FFN neurons); the others select after pooling: a sum over fewer columns may round differently."""
    if stat == "max":
        return _masked_max(x if columns is None else x.index_select(-1, columns), mask)
    if stat == "sum":  # a batched matrix product: no masked copy of the activations is made
        pooled = torch.bmm(mask.unsqueeze(1).to(x.dtype), x).squeeze(1)
    else:
        pooled = x[torch.arange(x.shape[0], device=x.device), (_last_index if stat == "last" else _first_index)(mask)]
    return pooled if columns is None else pooled.index_select(-1, columns)


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the real tokens of each row, reading only real tokens where the batch allows it.

    Columns real in every row need no mask. When the rows are right-padded and sorted longest first (extraction's
    batches are), rows of one length form a contiguous block, and each block's tail is a plain slice: no masked
    copy of the activations is made. Other masks (left padding, unsorted rows) mask the ragged tail.
    """
    if torch.compiler.is_exporting() or torch.jit.is_tracing():  # a graph cannot branch on the data: mask it all
        return x.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)
    lengths = mask.sum(dim=1)
    shortest = int(lengths.min())
    if shortest == 0 or not bool(mask[:, :shortest].all()):
        return x.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).amax(dim=1)
    head = x[:, :shortest].amax(dim=1)
    if shortest == x.shape[1]:
        return head
    right_padded = bool((mask.cumprod(dim=1).sum(dim=1) == lengths).all())
    if right_padded and bool((lengths[:-1] >= lengths[1:]).all()):
        per_row = lengths.tolist()
        start = 0
        while start < len(per_row) and per_row[start] > shortest:
            length, stop = per_row[start], start
            while stop < len(per_row) and per_row[stop] == length:
                stop += 1
            torch.maximum(head[start:stop], x[start:stop, shortest:length].amax(dim=1), out=head[start:stop])
            start = stop
        return head
    tail = x[:, shortest:].masked_fill(~mask[:, shortest:].bool().unsqueeze(-1), float("-inf"))
    return torch.maximum(head, tail.amax(dim=1))


def pool_tokens(x: torch.Tensor, mask: torch.Tensor, pooling: str, columns: torch.Tensor | None = None) -> torch.Tensor:
    """Pool token activations x (B, T, F) over the real tokens of ``mask`` (B, T): mean, max, first or last."""
    if pooling == "mean":
        return _token_stat(x, mask, "sum", columns) / mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose from {POOLINGS}")
    return _token_stat(x, mask, pooling, columns)


# --- tokenisation and batching -------------------------------------------------------------------------------------

@dataclass
class TokenizedTexts:
    """Token ids of every window, which text each window belongs to, and its place among that text's windows."""

    input_ids: list[list[int]]
    text_index: np.ndarray
    window_index: np.ndarray
    n_windows: np.ndarray  # per text
    type_ids: list[list[int]] | None = None  # text pairs on a model with segment ids: 0 for the first, 1 the second

    def padded(self, rows: np.ndarray, pad_id: int, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask of these windows, right-padded to the longest."""
        width = max(len(self.input_ids[r]) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(self.input_ids[r])] = torch.as_tensor(self.input_ids[r])
            mask[i, :len(self.input_ids[r])] = 1
        return ids.to(device), mask.to(device)

    def padded_type_ids(self, rows: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor | None:
        """The segment ids (``token_type_ids``) of these windows, right-padded with 0 as ``padded`` pads; None when
        the texts are not pairs or the model has no segment ids."""
        if self.type_ids is None:
            return None
        width = max(len(self.type_ids[r]) for r in rows)
        types = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            types[i, :len(self.type_ids[r])] = torch.as_tensor(self.type_ids[r])
        return types.to(device)

    def batches(self, token_budget: int) -> list[np.ndarray]:
        """Windows sorted by length, grouped so that rows x longest row stays within the token budget and no row
        is padded by more than a quarter of its own length (or ``_PAD_SLACK`` tokens, if more)."""
        lengths = np.array([len(ids) for ids in self.input_ids])
        order = np.argsort(-lengths, kind="stable")
        sorted_lengths = lengths[order]
        batches, start = [], 0
        while start < len(order):
            longest = int(sorted_lengths[start])
            rows = max(1, token_budget // max(longest, 1))
            # The padding bound splits a small batch of mixed lengths (a server's pass of 64 texts) into a few
            # forwards of similar lengths instead of one padded to its longest; large sorted inputs hardly change.
            shortest_kept = min(longest / (1 + _PAD_FRACTION), longest - _PAD_SLACK)
            fits = int(np.count_nonzero(sorted_lengths[start:start + rows] >= shortest_kept))
            batches.append(order[start:start + max(fits, 1)])
            start += max(fits, 1)
        return batches


def tokenize(backbone: Backbone, texts: Sequence[str], *, max_length: int | None = None, windows: bool = False,
             window_overlap: int = 64) -> TokenizedTexts:
    """Tokenise texts, truncated to ``max_length`` or, with ``windows``, cut into overlapping windows."""
    return tokenize_with(backbone.tokenizer, texts, max_length=max_length or backbone.max_length, windows=windows,
                         window_overlap=window_overlap)


#: Between the two texts of a pair, for a tokenizer without a separator token (decoders: GPT-2, Llama): the first
#: text, a blank line, the second.
PAIR_TEMPLATE_SEPARATOR = "\n\n"


def _tokenize_pairs(tokenizer, pairs: Sequence[tuple[str, str]], *, max_length: int) -> TokenizedTexts:
    """Pairs through the tokenizer's own pair encoding (``[CLS] a [SEP] b [SEP]`` for BERT, its segment ids where
    the model takes them), truncated ``longest_first`` (the longer text loses tokens first); a tokenizer without a
    separator token (a decoder's) reads the first text and ``PAIR_TEMPLATE_SEPARATOR`` before the second."""
    first = [a if tokenizer.sep_token is not None else a + PAIR_TEMPLATE_SEPARATOR for a, _ in pairs]
    segments = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    encoded = tokenizer(first, [b for _, b in pairs], truncation="longest_first", max_length=max_length,
                        padding=False, return_attention_mask=False, return_token_type_ids=segments)
    input_ids = [list(ids) for ids in encoded["input_ids"]]
    n = len(input_ids)
    return TokenizedTexts(input_ids, np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
                          np.ones(n, dtype=np.int64),
                          [list(types) for types in encoded["token_type_ids"]] if segments else None)


def tokenize_with(tokenizer, texts: Sequence[str], *, max_length: int, windows: bool = False,
                  window_overlap: int = 64) -> TokenizedTexts:
    """``tokenize`` with a bare tokenizer: runtimes without a torch backbone (ONNX) tokenise exactly as extraction.
    ``texts`` may be text pairs ((a, b) tuples: ``_tokenize_pairs``), without windows."""
    if texts and isinstance(texts[0], tuple):
        if windows:
            raise ValueError("windows are not available for text pairs: a pair is truncated longest_first to "
                             "max_length; pass windows=False")
        return _tokenize_pairs(tokenizer, texts, max_length=max_length)
    if windows and not 0 <= window_overlap < max_length // 2:
        raise ValueError(f"window_overlap must be in [0, max_length/2), got {window_overlap} with "
                         f"max_length={max_length}")
    if windows and not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"windows need a fast tokenizer; {type(tokenizer).__name__} is not one")
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False,
                        return_overflowing_tokens=windows, stride=window_overlap if windows else 0,
                        return_attention_mask=False)
    input_ids = [list(ids) for ids in encoded["input_ids"]]
    if windows:
        text_index = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
    else:
        text_index = np.arange(len(input_ids), dtype=np.int64)
    n_windows = np.bincount(text_index, minlength=len(texts))
    starts = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    window_index = np.arange(len(input_ids)) - starts[text_index]
    empty = [int(text_index[i]) for i, ids in enumerate(input_ids) if not ids]
    if empty:
        raise ValueError(f"text {empty[0]} has no tokens for this tokenizer; remove empty texts")
    return TokenizedTexts(input_ids, text_index, window_index, n_windows)


# --- the forward pass with hooks -------------------------------------------------------------------------------------

class _StopForward(Exception):
    """Raised by the hook on the deepest needed block: nothing deeper is computed."""


def _block_output(output):
    return output[0] if isinstance(output, tuple) else output


def attach_site_hooks(layer_map, sites: Collection[tuple[str, int]], hand: Callable[[str, int, torch.Tensor], None],
                      *, num_layers: int, stop_after: int | None = None) -> list:
    """Hooks handing each site's token-level activations to ``hand(representation, layer, x)`` (the sites as in
    ``hooked_forward``); with ``stop_after``, the forward stops after that block. Returns the hook handles. Also
    used inside the ONNX export graph, so that exported and extracted activations come from the same sites."""
    sites = set(sites)
    deepest = max(layer for _, layer in sites)
    handles = []
    if ("hidden", 0) in sites:
        def embeddings_hook(module, args, kwargs):
            hand("hidden", 0, args[0] if args else kwargs["hidden_states"])
        handles.append(layer_map.blocks[0].register_forward_pre_hook(embeddings_hook, with_kwargs=True))
    for layer in range(1, deepest + 1):
        block = layer_map.blocks[layer - 1]
        if ("ffn", layer) in sites:
            handles.append(layer_map.ffn_out[layer - 1].register_forward_pre_hook(
                lambda module, args, layer=layer: hand("ffn", layer, args[0])))

        def block_hook(module, args, output, layer=layer):
            if ("hidden", layer) in sites:
                hidden = _block_output(output)
                if layer == num_layers and layer_map.final_norm is not None:
                    hidden = layer_map.final_norm(hidden)  # as the model's own output_hidden_states reports it
                hand("hidden", layer, hidden)
            if layer == stop_after:
                raise _StopForward
        handles.append(block.register_forward_hook(block_hook))
    return handles


def takes_segment_ids(model) -> bool:
    """Whether the model's forward takes ``token_type_ids`` (BERT, GPT-2 do; DistilBERT, Llama do not): a pair's
    segment ids are passed only where they are an input (and only where its tokenizer makes them)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def hooked_forward(backbone: Backbone, tokens: TokenizedTexts, sites: Collection[tuple[str, int]],
                   batches: Sequence[np.ndarray], consume: Callable[[str, int, torch.Tensor, np.ndarray, torch.Tensor],
                                                                    None], *, bar=None) -> None:
    """Run the model over the windows ``tokens``, one batch of rows at a time, and hand every site its token-level
    activations: ``consume(representation, layer, x, rows, mask)`` with x (B, T, F) for the batch's windows
    ``rows`` and their attention mask. The forward stops after the deepest block a site needs.

    The sites, (representation, layer): ``("hidden", 0)`` is the first block's input (the embeddings), ``("ffn",
    l)`` the input of block l's FFN output projection (the FFN neurons), ``("hidden", l)`` block l's output, with
    the model's final norm applied at the last layer, as its own ``output_hidden_states`` reports it. This is the
    only place stc hooks a model's forward pass.
    """
    layer_map, num_layers = backbone.layer_map, backbone.num_layers
    sites = set(sites)
    deepest = max(layer for _, layer in sites)
    batch_state: dict[str, object] = {}

    def hand(representation: str, layer: int, x: torch.Tensor) -> None:
        consume(representation, layer, x, batch_state["rows"], batch_state["mask"])

    handles = attach_site_hooks(layer_map, sites, hand, num_layers=num_layers, stop_after=deepest)
    pad_id = backbone.tokenizer.pad_token_id
    segment_ids = takes_segment_ids(backbone.model)
    try:
        with torch.inference_mode():
            for rows in batches:
                ids, mask = tokens.padded(rows, pad_id, backbone.device)
                batch_state["rows"], batch_state["mask"] = rows, mask
                types = tokens.padded_type_ids(rows, backbone.device) if segment_ids else None
                segments = {} if types is None else {"token_type_ids": types}  # the second text of pairs
                try:
                    backbone.model(input_ids=ids, attention_mask=mask, use_cache=False, **segments)
                except _StopForward:
                    pass
                if bar is not None:
                    bar.update(len(rows))
    finally:
        for handle in handles:
            handle.remove()


def check_layers(backbone: Backbone, parsed: Mapping[str, tuple[str, int, str]]) -> None:
    """Every parsed key's layer exists in this backbone (hidden 0..L, ffn 1..L)."""
    num_layers = backbone.num_layers
    for key, (representation, layer, _) in parsed.items():
        low = 0 if representation == "hidden" else 1
        if not low <= layer <= num_layers:
            raise ValueError(f"{key}: layer {layer} is outside {low}..{num_layers} for this {num_layers}-layer model")


def token_activations_of_windows(backbone: Backbone, tokens: TokenizedTexts, sites: Collection[tuple[str, int]]
                                 ) -> dict[tuple[str, int], torch.Tensor]:
    """Token-level activations (n_windows, T, F), float32, of every site for all windows of ``tokens`` run as one
    right-padded batch in window order: what an explanation reads, from the same hooks as extraction."""
    captured: dict[tuple[str, int], torch.Tensor] = {}

    def keep(representation: str, layer: int, x: torch.Tensor, rows: np.ndarray, mask: torch.Tensor) -> None:
        captured[(representation, layer)] = x.detach().float()

    hooked_forward(backbone, tokens, sites, [np.arange(len(tokens.input_ids))], keep)
    return captured


def extract_features(backbone: Backbone, texts: Sequence[str], keys: Sequence[str], *,
                     columns: Mapping[str, np.ndarray] | None = None, max_length: int | None = None,
                     windows: bool = False, window_overlap: int = 64, token_budget: int = 8192,
                     show_progress_bar: bool = False, progress_desc: str = "extract") -> dict[str, np.ndarray]:
    """Pooled activations for every key, as float32 arrays (n_texts, dim or len(columns[key])), in input order."""
    parsed = {key: parse_key(key) for key in keys}
    check_layers(backbone, parsed)
    tokens = tokenize(backbone, texts, max_length=max_length, windows=windows, window_overlap=window_overlap)
    n_texts = len(texts)
    # Which pooled statistics each (representation, layer) site must produce.
    sites: dict[tuple[str, int], set[str]] = {}
    for representation, layer, pooling in parsed.values():
        sites.setdefault((representation, layer), set()).update({"sum"} if pooling == "mean" else {pooling})
    accumulators: dict[str, np.ndarray] = {}
    token_counts = np.bincount(tokens.text_index, weights=[len(ids) for ids in tokens.input_ids],
                               minlength=n_texts).astype(np.float64)
    wanted = {key: torch.as_tensor(np.array(indices, dtype=np.int64), device=backbone.device)
              for key, indices in (columns or {}).items() if key in parsed}

    def consume(representation: str, layer: int, x: torch.Tensor, rows: np.ndarray, mask: torch.Tensor) -> None:
        for stat in sites[(representation, layer)]:  # one key each: a site's "sum" is its mean, the others their own
            pooling = "mean" if stat == "sum" else stat
            key = feature_key(representation, layer, pooling)
            pooled = _token_stat(x, mask, stat, wanted.get(key)).float()
            _accumulate(accumulators, key, pooling, pooled.cpu().numpy(), rows, tokens, n_texts)

    bar = tqdm(total=len(tokens.input_ids), desc=progress_desc, unit="win", disable=not show_progress_bar,
               leave=False)
    try:
        hooked_forward(backbone, tokens, sites, tokens.batches(token_budget), consume, bar=bar)
    finally:
        bar.close()
    for key, (_, _, pooling) in parsed.items():
        if pooling == "mean":
            accumulators[key] /= token_counts[:, None].astype(np.float32)
    return {key: accumulators[key] for key in keys}


def _accumulate(accumulators: dict[str, np.ndarray], key: str, pooling: str, values: np.ndarray,
                rows: np.ndarray, tokens: TokenizedTexts, n_texts: int) -> None:
    """Merge one batch of per-window statistics into the per-text arrays."""
    if key not in accumulators:
        fill = -np.inf if pooling == "max" else 0.0
        accumulators[key] = np.full((n_texts, values.shape[1]), fill, dtype=np.float32)
    target = accumulators[key]
    texts = tokens.text_index[rows]
    if len(tokens.input_ids) == n_texts:  # one window per text: each row is written once, nothing to merge
        target[texts] = values
    elif pooling in ("mean", "max") and len(np.unique(texts)) == len(texts):  # one window per text in this batch
        target[texts] = target[texts] + values if pooling == "mean" else np.maximum(target[texts], values)
    elif pooling == "mean":
        np.add.at(target, texts, values)
    elif pooling == "max":
        np.maximum.at(target, texts, values)
    else:
        wanted = 0 if pooling == "first" else None
        window = tokens.window_index[rows]
        take = window == 0 if wanted == 0 else window == tokens.n_windows[texts] - 1
        target[texts[take]] = values[take]
