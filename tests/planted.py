"""A planted text-classification problem with a known answer, shared by the baseline and runner tests."""

from __future__ import annotations

import numpy as np


def planted_texts(n_per_class: int = 24, seed: int = 0, shuffle: bool = True) -> tuple[list[str], list[str]]:
    """Class 'up' texts hold the word 'excellent', class 'down' texts the word 'terrible'; the rest is noise."""
    rng = np.random.default_rng(seed)
    filler = "the a of movie film plot actor scene story time some very quite".split()
    texts, labels = [], []
    for label, word in (("up", "excellent"), ("down", "terrible")):
        for _ in range(n_per_class):
            words = list(rng.choice(filler, size=6))
            words.insert(int(rng.integers(0, 6)), word)
            texts.append(" ".join(words))
            labels.append(label)
    if not shuffle:
        return texts, labels
    order = rng.permutation(len(texts))
    return [texts[i] for i in order], [labels[i] for i in order]
