"""Shared fixtures: tiny randomly initialised models of each family, with a real (BERT) tokenizer."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FAMILIES = ("gpt2", "bert", "distilbert", "roberta", "llama")


@pytest.fixture(scope="session")
def tokenizer():
    from transformers import AutoTokenizer

    from stc.backbone import resolve_model_name

    return AutoTokenizer.from_pretrained(resolve_model_name("minilm")[0])


def build_tiny_model(family: str, vocab_size: int, seed: int = 0):
    """A 3-layer model of the family with small random weights (hidden 32, FFN 48)."""
    import transformers as tf

    torch.manual_seed(seed)
    if family == "gpt2":
        config = tf.GPT2Config(n_layer=3, n_embd=32, n_head=2, n_inner=48, vocab_size=vocab_size, n_positions=256)
        model = tf.GPT2Model(config)
    elif family == "bert":
        model = tf.BertModel(tf.BertConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48,
                                           num_attention_heads=2, vocab_size=vocab_size, max_position_embeddings=256),
                             add_pooling_layer=False)
    elif family == "distilbert":
        model = tf.DistilBertModel(tf.DistilBertConfig(n_layers=3, dim=32, hidden_dim=48, n_heads=2,
                                                       vocab_size=vocab_size, max_position_embeddings=256))
    elif family == "roberta":
        model = tf.RobertaModel(tf.RobertaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48,
                                                 num_attention_heads=2, vocab_size=vocab_size,
                                                 max_position_embeddings=258, pad_token_id=0),
                                add_pooling_layer=False)
    elif family == "llama":
        model = tf.LlamaModel(tf.LlamaConfig(num_hidden_layers=3, hidden_size=32, intermediate_size=48,
                                             num_attention_heads=2, num_key_value_heads=2, vocab_size=vocab_size,
                                             max_position_embeddings=256, pad_token_id=0))
    else:
        raise ValueError(family)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_backbones(tokenizer):
    """family -> Backbone wrapping a tiny random model."""
    from stc.backbone import from_model

    backbones = {}
    for family in FAMILIES:
        model = build_tiny_model(family, len(tokenizer))
        backbone = from_model(model, tokenizer, name=f"tiny-{family}", device="cpu")
        backbone.tokenizer.model_max_length = 128
        backbones[family] = backbone
    return backbones


@pytest.fixture(scope="session")
def mr_small():
    """Real movie-review sentences (MR), a few hundred per split."""
    from stc.data import load_dataset

    return load_dataset("mr", limit=160)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray for the whole test session (start-up costs seconds): two CPUs, as CI has."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
