"""The module that is exported: the backbone cut at the exit layer, token pooling, and the kept neurons only.

It reads the same sites extraction reads (``stc.extract``): the FFN output projection's input, each block's output
(the final norm applied at the model's last layer, as the model reports it) and the first block's input for layer
0, and pools them with ``stc.extract.pool_tokens``, the one pooling implementation. The blocks past the exit layer
are removed from a private copy of the model, so they are not in the graph at all.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from ..backbone import Backbone, find_layer_map
from ..extract import attach_site_hooks, parse_key, pool_tokens

__all__ = ["FeatureGraph"]


def _blocks_owner(model: nn.Module, blocks: list[nn.Module]) -> tuple[nn.Module, str]:
    """(parent module, attribute) of the ModuleList that holds exactly these blocks."""
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == len(blocks) and all(
                a is b for a, b in zip(module, blocks)):
            parent_name, _, attribute = name.rpartition(".")
            return model.get_submodule(parent_name), attribute
    raise ValueError(f"cannot find the list of blocks of {type(model).__name__} to cut it at the exit layer")


class FeatureGraph(nn.Module):
    """(input_ids, attention_mask) of right-padded rows -> kept-neuron features (rows, n_features), float32.

    The features come in ``kept_columns`` order (the order of ``kept_neurons_``), exactly what
    ``STCClassifier.transform`` gives for texts that fit in one window.
    """

    def __init__(self, backbone: Backbone, kept_columns: Mapping[str, np.ndarray]):
        super().__init__()
        self.keys = [(key, *parse_key(key)) for key in kept_columns]
        if not self.keys:
            raise ValueError("the model keeps no neurons: nothing to export")
        self.deepest = max(layer for _, _, layer, _ in self.keys)
        if self.deepest > backbone.num_layers:
            raise ValueError(f"a kept key reads layer {self.deepest} of a {backbone.num_layers}-layer backbone")
        model = copy.deepcopy(backbone.model).float().eval().cpu()
        layer_map = find_layer_map(model)
        owner, attribute = _blocks_owner(model, layer_map.blocks)
        setattr(owner, attribute, nn.ModuleList(layer_map.blocks[:self.deepest]))
        self.model = model
        for index, (key, *_rest) in enumerate(self.keys):
            columns = torch.as_tensor(np.asarray(kept_columns[key], dtype=np.int64))
            self.register_buffer(f"columns_{index}", columns, persistent=False)
        self._sites = {(representation, layer) for _, representation, layer, _ in self.keys}
        self._captured: dict[tuple[str, int], torch.Tensor] = {}
        # The same hook sites as extraction (final norm on the last layer included); no early stop: the blocks
        # past the deepest kept layer are already removed from this copy.
        attach_site_hooks(layer_map, self._sites, lambda representation, layer, x: self._keep((representation, layer),
                                                                                              x),
                          num_layers=backbone.num_layers)

    def _keep(self, site: tuple[str, int], x: torch.Tensor) -> None:
        self._captured[site] = x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        self._captured = {}
        segments = {} if token_type_ids is None else {"token_type_ids": token_type_ids}  # text pairs' second text
        self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **segments)
        parts = []
        for index, (_key, representation, layer, pooling) in enumerate(self.keys):
            x = self._captured[(representation, layer)]
            parts.append(pool_tokens(x.float(), attention_mask, pooling, getattr(self, f"columns_{index}")))
        self._captured = {}
        return torch.cat(parts, dim=1)
