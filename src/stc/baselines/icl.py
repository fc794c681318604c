"""The in-context-learning baseline: k demonstrations per class in a prompt, the label word with the highest
log-probability wins.

No weight changes: ``fit`` only draws the demonstrations (seeded, per class) from the training texts. Every test
text costs one forward pass of the causal LM over the whole prompt (more when a label word spans several tokens),
which is the inference cost the paper compares STC against.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import Tags
from sklearn.utils.validation import check_is_fitted
from tqdm.auto import tqdm

from .._estimator import encode_labels, text_estimator_tags
from .._validation import check_integers, check_texts
from ..backbone import resolve_device, resolve_dtype
from .finetune import checkpoint_source, count_parameters, load_tokenizer

__all__ = ["ICLClassifier", "label_log_probs", "DEFAULT_INSTRUCTION", "DEFAULT_TEMPLATE"]

DEFAULT_INSTRUCTION = "Classify each text as one of: {labels}.\n\n"
#: A demonstration is the template with its label word; the query is the template cut just before ``{label}``.
DEFAULT_TEMPLATE = "Text: {text}\nLabel: {label}\n\n"


def label_log_probs(model: torch.nn.Module, tokenizer, prompts: Sequence[str], label_words: Sequence[str], *,
                    prefix: str = "", batch_size: int = 8, device: torch.device | str = "cpu",
                    show_progress_bar: bool = False) -> np.ndarray:
    """log P(word | prefix + prompt) of every label word after every prompt, summed over the word's tokens: (n, K).

    A word is scored as the continuation ``" " + word`` tokenised on its own. The shared ``prefix`` (instruction
    and demonstrations) runs once; its key/value cache is reused by every batch, so each text costs only its own
    tokens. Rows are right-padded with explicit position ids, so a padded row scores exactly as it would alone.
    """
    word_ids = [tokenizer(" " + word, add_special_tokens=False)["input_ids"] for word in label_words]
    for word, ids in zip(label_words, word_ids):
        if not ids:
            raise ValueError(f"label word {word!r} tokenises to nothing")
    prompt_ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    single_token = all(len(ids) == 1 for ids in word_ids)
    # Each item: (prompt index, word index or -1 for 'all single-token words', token ids fed after the prefix).
    if single_token:
        items = [(i, -1, ids) for i, ids in enumerate(prompt_ids)]
    else:
        items = [(i, k, ids + word[:-1]) for i, ids in enumerate(prompt_ids) for k, word in enumerate(word_ids)]
    empty = [i for i, ids in enumerate(prompt_ids) if not ids]
    if empty:
        raise ValueError(f"prompts[{empty[0]}] is empty: each prompt needs at least one token after the prefix")
    scores = np.zeros((len(prompt_ids), len(word_ids)), dtype=np.float64)
    order = np.argsort([-len(item[2]) for item in items], kind="stable")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    n_prefix = len(prefix_ids)
    with torch.inference_mode():
        prefix_cache = None
        if prefix_ids:
            prefix_cache = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True).past_key_values
        for start in tqdm(range(0, len(order), batch_size), desc="icl score", leave=False,
                          disable=not show_progress_bar):
            batch = [items[j] for j in order[start:start + batch_size]]
            width = max(len(item[2]) for item in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), n_prefix + width), dtype=torch.long)
            mask[:, :n_prefix] = 1
            for row, (_, _, ids) in enumerate(batch):
                input_ids[row, :len(ids)] = torch.as_tensor(ids)
                mask[row, n_prefix:n_prefix + len(ids)] = 1
            positions = (n_prefix + torch.arange(width)).expand(len(batch), width)
            past = None
            if prefix_cache is not None:
                past = copy.deepcopy(prefix_cache)
                past.batch_repeat_interleave(len(batch))
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                           position_ids=positions.to(device), past_key_values=past, use_cache=past is not None).logits
            for row, (i, k, ids) in enumerate(batch):
                if k < 0:  # the logits after the prompt's last token hold every (single-token) word
                    step = torch.log_softmax(logits[row, len(ids) - 1].float(), dim=-1)
                    scores[i] = step[[w[0] for w in word_ids]].cpu().numpy()
                else:  # ids = prompt + word[:-1]: the last len(word) positions predict the word's tokens
                    word = word_ids[k]
                    log_probs = torch.log_softmax(logits[row, len(ids) - len(word):len(ids)].float(), dim=-1)
                    scores[i, k] = float(log_probs[torch.arange(len(word)), torch.as_tensor(word)].sum())
    return scores


class ICLClassifier(ClassifierMixin, BaseEstimator):
    """k-shot prompting of a causal LM; prediction = the label word with the highest log-probability.

    Parameters
    ----------
    model : causal LM: alias (``smollm2``), local directory, ``.gguf`` file or hub id.
    shots : demonstrations per class, drawn from the training texts with ``random_state``.
    label_words : the word standing for each class ({label: word}); None = the label itself, as a string.
    instruction : text opening the prompt; ``{labels}`` becomes the label words joined by ", ".
    template : one demonstration, with ``{text}`` and ``{label}``; the query is the template up to ``{label}``.
    max_text_tokens : each demonstration and query text is cut to this many tokens (keeps prompts short).
    """

    def __init__(self, model: str = "smollm2", *, shots: int = 1, label_words: Mapping | None = None,
                 instruction: str = DEFAULT_INSTRUCTION, template: str = DEFAULT_TEMPLATE,
                 max_text_tokens: int = 96, batch_size: int = 8, device: str = "auto", dtype: str = "float32",
                 random_state: int = 42, show_progress_bar: bool = True):
        self.model = model
        self.shots = shots
        self.label_words = label_words
        self.instruction = instruction
        self.template = template
        self.max_text_tokens = max_text_tokens
        self.batch_size = batch_size
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.show_progress_bar = show_progress_bar

    def _check_params(self) -> None:
        check_integers(self, ("shots", "max_text_tokens", "batch_size"))
        if "{text}" not in self.template or "{label}" not in self.template:
            raise ValueError(f"template must contain {{text}} and {{label}}, got {self.template!r}")
        if self.template.index("{text}") > self.template.index("{label}"):
            raise ValueError("template must put {text} before {label}: the label word is what the model predicts")

    def __sklearn_tags__(self) -> Tags:
        return text_estimator_tags(super().__sklearn_tags__(), transformer=False)

    def fit(self, X, y, **_ignored) -> ICLClassifier:
        """Draw ``shots`` demonstrations per class from X, y (seeded) and load the LM; no weights change."""
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        self._check_params()
        texts = check_texts(X, "X")
        self.classes_, codes = encode_labels(y, len(texts))
        words = dict(self.label_words or {})
        unknown = sorted(set(words) - set(self.classes_.tolist()), key=str)
        if unknown:
            raise ValueError(f"label_words names labels absent from y: {unknown}")
        self.label_words_ = [str(words.get(label, label)).strip() for label in self.classes_.tolist()]
        if len(set(self.label_words_)) < len(self.label_words_):
            raise ValueError(f"label words must differ between classes, got {self.label_words_}")
        source, gguf_file = checkpoint_source(self.model)
        self.tokenizer_ = load_tokenizer(source, gguf_file)
        self.device_ = resolve_device(self.device)
        dtype = resolve_dtype(self.dtype, self.device_)
        self.model_ = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, **({"gguf_file": gguf_file} if gguf_file else {})).to(self.device_).eval()
        rng = np.random.default_rng(self.random_state)
        demonstrations = []
        for code in range(len(self.classes_)):
            members = np.flatnonzero(codes == code)
            chosen = rng.choice(members, size=min(self.shots, len(members)), replace=False)
            demonstrations += [(texts[i], self.label_words_[code]) for i in chosen]
        self.demonstrations_ = [demonstrations[i] for i in rng.permutation(len(demonstrations))]
        prefix = self.instruction.replace("{labels}", ", ".join(self.label_words_))
        self.prompt_prefix_ = prefix + "".join(
            self.template.replace("{text}", self._cut(text)).replace("{label}", word)
            for text, word in self.demonstrations_)
        self.n_features_ = 0  # nothing is trained
        self.n_trainable_params_ = 0
        self.n_model_params_ = count_parameters(self.model_, trainable_only=False)
        self.exit_layer_ = int(getattr(self.model_.config, "num_hidden_layers", 0))
        self.fit_seconds_ = time.perf_counter() - started
        return self

    def _cut(self, text: str) -> str:
        ids = self.tokenizer_(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_text_tokens:
            return text.strip()
        return self.tokenizer_.decode(ids[:self.max_text_tokens]).strip() + " …"

    def prompts(self, X) -> list[str]:
        """The full prompt for each text: instruction, demonstrations, then the text with the label left open."""
        check_is_fitted(self, "prompt_prefix_")
        query = self.template[:self.template.index("{label}")].rstrip(" ")
        return [self.prompt_prefix_ + query.replace("{text}", self._cut(text)) for text in check_texts(X, "X")]

    def label_log_probs(self, X) -> np.ndarray:
        """log P(label word | prompt) per class (n_texts, n_classes), columns in ``classes_`` order."""
        prompts = self.prompts(X)
        queries = [prompt[len(self.prompt_prefix_):] for prompt in prompts]
        return label_log_probs(self.model_, self.tokenizer_, queries, self.label_words_, prefix=self.prompt_prefix_,
                               batch_size=self.batch_size, device=self.device_,
                               show_progress_bar=self.show_progress_bar)

    def decision_function(self, X) -> np.ndarray:
        """scikit-learn's shapes: (n_texts,) for two classes (log P of ``classes_[1]``'s word minus that of
        ``classes_[0]``'s), else ``label_log_probs`` (n_texts, n_classes)."""
        scores = self.label_log_probs(X)
        return scores[:, 1] - scores[:, 0] if scores.shape[1] == 2 else scores

    def predict_proba(self, X) -> np.ndarray:
        """The label words' probabilities renormalised over the classes."""
        scores = self.label_log_probs(X)
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        codes = self.label_log_probs(X).argmax(axis=1)
        return self.classes_[codes]
