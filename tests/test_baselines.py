"""Fine-tuning, in-context learning and SetFit baselines on tiny random models saved as ordinary checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stc.baselines import FineTuneClassifier, ICLClassifier, SetFitClassifier, label_log_probs, setfit_available
from stc.baselines import setfit_peer

from ._helpers import NUM_LAYERS, planted_texts, save_tiny


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, tokenizer):
    """Checkpoint directories of a tiny BERT encoder and a tiny causal Llama, each with the MiniLM tokenizer."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {"bert": save_tiny(root / "bert", tokenizer=tokenizer),
            "llama": save_tiny(root / "llama", "llama", causal_lm=True, tokenizer=tokenizer)}


def planted_lm(vocab_size: int, target_id: int, margin: float = 5.0):
    """A GPT-2 LM whose output ignores its input: logit ``margin`` for ``target_id``, 0 for every other token."""
    import transformers as tf

    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=vocab_size, n_positions=256,
                                             tie_word_embeddings=False))
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[target_id, 0] = margin
    return model.eval()


# --- in-context learning --------------------------------------------------------------------------------------------

def test_label_log_probs_match_hand_computed_values_on_a_planted_lm(tokenizer):
    target = tokenizer(" good", add_special_tokens=False)["input_ids"]
    assert len(target) == 1
    vocab = len(tokenizer)
    model = planted_lm(vocab, target[0])
    log_z = math.log(math.exp(5.0) + vocab - 1)
    scores = label_log_probs(model, tokenizer, ["first prompt", "a much longer second prompt here"],
                             ["good", "bad"])
    np.testing.assert_allclose(scores, [[5.0 - log_z, -log_z]] * 2, atol=1e-4)


def test_multi_token_label_words_sum_their_tokens_log_probs(tokenizer):
    good = tokenizer(" good", add_special_tokens=False)["input_ids"][0]
    word = "qzxj kwvy"
    word_ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    n_tokens = len(word_ids)
    assert n_tokens >= 3 and good not in word_ids
    vocab = len(tokenizer)
    log_z = math.log(math.exp(5.0) + vocab - 1)
    scores = label_log_probs(planted_lm(vocab, good), tokenizer, ["some prompt"], ["good", word])
    # 'good' is the planted token; every token of the other word is one of the vocab - 1 unplanted ones.
    np.testing.assert_allclose(scores[0], [5.0 - log_z, -n_tokens * log_z], atol=1e-3)


@pytest.mark.parametrize("prefix", ["", "an instruction and two demonstrations here\n\n"])
@pytest.mark.parametrize("words", [["yes", "no"], ["yes", "unbelievable"]])
def test_batched_padded_cached_scores_equal_one_whole_prompt_at_a_time(tokenizer, tiny_dirs, prefix, words):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dirs["llama"]).eval()
    prompts = ["short one", "a somewhat longer prompt with more words in it", "mid length prompt"]
    batched = label_log_probs(model, tokenizer, prompts, words, prefix=prefix, batch_size=3)
    prefix_ids = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
    for i, prompt in enumerate(prompts):
        prompt_ids = prefix_ids + tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for k, word in enumerate(words):
            word_ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt_ids + word_ids])).logits[0]
            log_probs = torch.log_softmax(logits, dim=-1)
            expected = sum(float(log_probs[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(word_ids))
            assert batched[i, k] == pytest.approx(expected, abs=1e-4)


def test_icl_predicts_the_label_whose_word_the_model_prefers(tokenizer, tmp_path):
    planted = tokenizer(" bad", add_special_tokens=False)["input_ids"][0]
    planted_lm(len(tokenizer), planted).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    texts, labels = planted_texts(2, 6, shuffle=True)
    clf = ICLClassifier(model=str(tmp_path), shots=2, show_progress_bar=False).fit(texts, labels)
    assert set(clf.predict(texts[:5]).tolist()) == {"bad"}
    assert clf.predict_proba(texts[:2]).sum(axis=1) == pytest.approx([1.0, 1.0])


def test_icl_draws_seeded_demonstrations_per_class_into_the_prompt(tiny_dirs):
    texts, labels = planted_texts(2, 8, shuffle=True)
    clf = ICLClassifier(model=tiny_dirs["llama"], shots=2, label_words={"good": "positive", "bad": "negative"},
                        random_state=3, show_progress_bar=False).fit(texts, labels)
    words = [word for _, word in clf.demonstrations_]
    assert sorted(words) == ["negative", "negative", "positive", "positive"]
    assert "Classify each text as one of: negative, positive." in clf.prompt_prefix_
    prompt = clf.prompts(["an unseen query"])[0]
    assert prompt.startswith(clf.prompt_prefix_) and prompt.endswith("Text: an unseen query\nLabel:")
    again = ICLClassifier(model=tiny_dirs["llama"], shots=2, label_words={"good": "positive", "bad": "negative"},
                          random_state=3, show_progress_bar=False).fit(texts, labels)
    assert again.demonstrations_ == clf.demonstrations_


@pytest.mark.parametrize("params, message", [
    ({"shots": 0}, "shots must be a positive integer"),
    ({"template": "Label: {label} Text: {text}"}, "template must put {text} before {label}"),
    ({"label_words": {"sideways": "x"}}, "label_words names labels absent from y"),
    ({"label_words": {"good": "same", "bad": "same"}}, "label words must differ"),
])
def test_icl_refuses_bad_settings_with_a_message_naming_them(tiny_dirs, params, message):
    texts, labels = planted_texts(2, 4, shuffle=True)
    with pytest.raises(ValueError, match=message):
        ICLClassifier(model=tiny_dirs["llama"], show_progress_bar=False, **params).fit(texts, labels)


# --- fine-tuning ----------------------------------------------------------------------------------------------------

def test_finetuning_learns_a_planted_word_and_saves_a_loadable_checkpoint(tiny_dirs, tmp_path):
    from transformers import AutoModelForSequenceClassification

    texts, labels = planted_texts(2, 24, shuffle=True)
    val_texts, val_labels = planted_texts(2, 8, seed=1, shuffle=True)
    clf = FineTuneClassifier(model=tiny_dirs["bert"], epochs=6, learning_rate=1e-2, batch_size=8, max_length=32,
                             output_dir=str(tmp_path / "ft"), show_progress_bar=False)
    clf.fit(texts, labels, X_val=val_texts, y_val=val_labels)
    assert clf.val_score_ == max(clf.val_scores_) and len(clf.val_scores_) == 6
    assert clf.val_scores_[clf.best_epoch_ - 1] == clf.val_score_
    assert clf.val_score_ >= 0.9
    assert clf.score(val_texts, val_labels) == pytest.approx(clf.val_score_)
    reloaded = AutoModelForSequenceClassification.from_pretrained(clf.checkpoint_dir_).eval()
    assert reloaded.config.id2label == {0: "bad", 1: "good"}
    inputs = clf.tokenizer_(val_texts[:4], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = reloaded(**inputs).logits.numpy()
    # the saved checkpoint computes the estimator's logits; decision_function is their difference (two classes)
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], clf.decision_function(val_texts[:4]), atol=1e-4)
    assert clf.n_trainable_params_ == sum(p.numel() for p in reloaded.parameters())


def test_finetuning_twice_with_one_seed_gives_identical_predictions(tiny_dirs):
    texts, labels = planted_texts(2, 12, shuffle=True)
    runs = [FineTuneClassifier(model=tiny_dirs["bert"], epochs=2, learning_rate=1e-3, batch_size=8,
                               random_state=7, show_progress_bar=False).fit(texts, labels) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].decision_function(texts), runs[1].decision_function(texts))


def test_finetuning_a_decoder_sets_its_pad_token(tiny_dirs):
    texts, labels = planted_texts(2, 8, shuffle=True)
    clf = FineTuneClassifier(model=tiny_dirs["llama"], epochs=1, batch_size=4, show_progress_bar=False)
    clf.fit(texts, labels)
    assert clf.model_.config.pad_token_id == clf.tokenizer_.pad_token_id is not None
    assert clf.predict(texts).shape == (len(texts),)


@pytest.mark.parametrize("params, message", [
    ({"epochs": 0}, "epochs must be a positive integer"),
    ({"learning_rate": 2.0}, "learning_rate must be a number in"),
    ({"max_length": 1}, "max_length must be None or an integer"),
])
def test_finetuning_refuses_bad_settings_with_a_message_naming_them(tiny_dirs, params, message):
    texts, labels = planted_texts(2, 4, shuffle=True)
    with pytest.raises(ValueError, match=message):
        FineTuneClassifier(model=tiny_dirs["bert"], show_progress_bar=False, **params).fit(texts, labels)


# --- SetFit ---------------------------------------------------------------------------------------------------------

@pytest.mark.skipif(setfit_available() is not None, reason="setfit is not installed (optional extra)")
def test_setfit_trains_on_a_tiny_encoder_and_predicts_known_labels(tiny_dirs, capfd):
    texts, labels = planted_texts(2, 10, shuffle=True)
    clf = SetFitClassifier(model=tiny_dirs["bert"], num_iterations=1, max_steps=4, batch_size=8,
                           show_progress_bar=False).fit(texts, labels)
    assert "4/4" not in capfd.readouterr().err, "show_progress_bar=False must silence the contrastive phase's bar"
    assert set(clf.predict(texts).tolist()) <= {"good", "bad"}
    assert clf.predict_proba(texts[:3]).shape == (3, 2)
    assert 0.0 <= clf.val_score_ <= 1.0 and clf.exit_layer_ == NUM_LAYERS


def test_setfit_missing_gives_a_clear_error(monkeypatch, tiny_dirs):
    monkeypatch.setattr(setfit_peer, "setfit_available", lambda: "SetFit is not usable here (no module)")
    texts, labels = planted_texts(2, 4, shuffle=True)
    with pytest.raises(ImportError, match="SetFit is not usable here"):
        SetFitClassifier(model=tiny_dirs["bert"]).fit(texts, labels)


@pytest.mark.skipif(setfit_available() is not None, reason="setfit is not installed (optional extra)")
def test_setfit_save_body_writes_the_tuned_weights_as_a_model_stc_fits_on(tiny_dirs, tmp_path):
    from sklearn.exceptions import NotFittedError
    from transformers import AutoModel

    import stc

    from ._helpers import FAST

    with pytest.raises(NotFittedError):
        SetFitClassifier(model=tiny_dirs["bert"]).save_body(tmp_path / "unfitted")
    texts, labels = planted_texts(2, 10, shuffle=True)
    clf = SetFitClassifier(model=tiny_dirs["bert"], num_iterations=1, max_steps=4, batch_size=8,
                           show_progress_bar=False).fit(texts, labels)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("not a model")
    with pytest.raises(FileExistsError, match="not empty and holds no model"):
        clf.save_body(occupied)
    saved = clf.save_body(tmp_path / "tuned")
    assert clf.save_body(saved) == saved, "a model directory may be written over"

    tuned = clf.model_.model_body[0].auto_model.state_dict()
    loaded = AutoModel.from_pretrained(saved).state_dict()
    base = AutoModel.from_pretrained(tiny_dirs["bert"]).state_dict()
    assert all(torch.equal(loaded[name], tuned[name].cpu()) for name in tuned)
    assert any(not torch.equal(loaded[name], base[name]) for name in tuned), "the saved body is the untuned one"

    model = stc.STCClassifier(model=saved, store_dir=str(tmp_path / "stores"), **FAST).fit(texts, labels)
    assert set(model.predict(texts).tolist()) <= {"good", "bad"}
    assert model.n_features_ > 0
