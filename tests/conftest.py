"""Shared fixtures, built from ``tests/_helpers.py``: tiny random models of each family with a real (BERT)
tokenizer, a slice of a real corpus, one embedded Ray."""

from __future__ import annotations

import os

# One thread for torch (and BLAS) here, as each child gets (quiet_env), before anything imports torch: the suite's
# models are tiny, too small for a second thread to help, and on shared CPUs the threads wait for each other
# (test_baselines + test_classifier + test_explain under load: 156 s with two threads, 49 s with one).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from ._helpers import FAMILIES, save_tiny, tiny_model, tiny_tokenizer  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    """MiniLM's tokenizer, limited to the tiny models' length."""
    return tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_backbones(tokenizer):
    """family -> Backbone wrapping a tiny random model."""
    from stc.backbone import from_model

    return {family: from_model(tiny_model(family, len(tokenizer)), tokenizer, name=f"tiny-{family}", device="cpu")
            for family in FAMILIES}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny random BERT saved as a model directory (``save_tiny``), one per test module."""
    return save_tiny(tmp_path_factory.mktemp("tiny-bert"))


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
