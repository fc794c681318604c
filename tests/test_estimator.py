"""stc._estimator and the scikit-learn contract of every stc estimator (STC and the baselines).

scikit-learn's ``check_estimator`` runs none of its data checks on an estimator whose input is text (tag
``string=True``): it skips them with a SkipTestWarning. The ``test_contract_*`` tests stand in for those skipped
checks, on tiny random models: output shapes, ``classes_`` order, clone and parameter round trips, refitting,
and NotFittedError before fit.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils import estimator_checks, get_tags

from stc import STCClassifier
from stc.baselines import EmbeddingClassifier, FineTuneClassifier, ICLClassifier, SetFitClassifier

from ._helpers import FAST, KEYWORDS, LABELS, TEXTS, planted_texts, save_tiny, small_params

ESTIMATORS = [STCClassifier(model="minilm", etas=(0.5,), final_Cs=(1.0,), show_progress_bar=False),
              EmbeddingClassifier(model="minilm", show_progress_bar=False),
              FineTuneClassifier(model="minilm", epochs=1, show_progress_bar=False),
              ICLClassifier(model="smollm2", show_progress_bar=False),
              SetFitClassifier(model="minilm", show_progress_bar=False)]
#: The checks of scikit-learn's common suite that need no numeric X: they read parameters, tags and the class.
API_CHECKS = ["check_estimator_cloneable", "check_estimator_tags_renamed", "check_valid_tag_types",
              "check_estimator_repr", "check_no_attributes_set_in_init", "check_get_params_invariance",
              "check_set_params", "check_parameters_default_constructible",
              "check_do_not_raise_errors_in_init_or_set_params", "check_mixin_order"]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_tags_declare_a_text_classifier(estimator):
    tags = get_tags(estimator)
    assert tags.estimator_type == "classifier" and tags.classifier_tags is not None
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.target_tags.required
    has_transform = hasattr(estimator, "transform")
    assert (tags.transformer_tags is not None) == has_transform
    if has_transform:
        assert tags.transformer_tags.preserves_dtype == []  # texts in, float features out


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_check_estimator_passes_every_check_it_runs(estimator):
    """What this proves is small: for text input check_estimator runs its API checks (cloneability) and skips
    every data check, saying so; the test_contract_* tests below stand in for the skipped ones. It fails when a
    check it runs fails, and when it stops telling us that it skipped the data checks."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = estimator_checks.check_estimator(clone(estimator), on_fail=None)
    statuses = {r["check_name"]: r["status"] for r in results}
    assert statuses.get("check_estimator_cloneable") == "passed", statuses
    assert [name for name, status in statuses.items() if status == "failed"] == []
    assert any(issubclass(w.category, SkipTestWarning) and "string=True" in str(w.message) for w in caught)


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_scikit_learn_api_checks_that_need_no_numeric_data_pass(estimator, check):
    getattr(estimator_checks, check)(type(estimator).__name__, clone(estimator))


# --- the contract, for the data checks check_estimator skips -------------------------------------------------------

#: estimators that learn the planted problem on a tiny random model (ICL reads a random LM, one fine-tuning epoch
#: learns little): their predictions on the training texts must be right, which labels in the wrong columns fail
LEARNERS = ("STCClassifier", "EmbeddingClassifier")
TINY = ("STCClassifier", "EmbeddingClassifier", "FineTuneClassifier", "ICLClassifier")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-models")
    return {"bert": save_tiny(root / "bert"), "llama": save_tiny(root / "llama", "llama", causal_lm=True),
            "stores": str(root / "stores")}


@pytest.fixture(scope="module")
def make(tiny_dirs):
    """name -> a new, unfitted estimator of that class on a tiny model, with settings for a fit of a second."""
    def build(name: str):
        bert = tiny_dirs["bert"]
        return {"STCClassifier": lambda: STCClassifier(bert, store_dir=tiny_dirs["stores"], cv=None, **FAST),
                "EmbeddingClassifier": lambda: EmbeddingClassifier(bert, pooling="mean", Cs=(1.0,), device="cpu",
                                                                   store_dir=tiny_dirs["stores"],
                                                                   show_progress_bar=False),
                "FineTuneClassifier": lambda: FineTuneClassifier(bert, epochs=1, batch_size=8, max_length=32,
                                                                 device="cpu", show_progress_bar=False),
                "ICLClassifier": lambda: ICLClassifier(tiny_dirs["llama"], device="cpu", show_progress_bar=False),
                }[name]()
    return build


def relabelled(n_classes: int, names: list) -> tuple[list[str], list]:
    """Planted texts (shuffled) whose labels are ``names``, in that order of the planted classes: labels seen in
    an order that is not sorted."""
    texts, labels = planted_texts(n_classes, per_class=12, shuffle=True)
    name_of = dict(zip(KEYWORDS, names))
    return texts, [name_of[label] for label in labels]


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", TINY)
def test_contract_output_shapes(make, name, n_classes):
    texts, labels = relabelled(n_classes, ["b", "a", "c"])
    clf = make(name)
    assert clf.fit(texts, labels) is clf  # fit returns self
    new = ["a superb story", "the dreadful day", "a weird day in town", "it"]
    assert clf.predict(new).shape == (4,)
    probabilities = clf.predict_proba(new)
    assert probabilities.shape == (4, n_classes)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    if hasattr(clf, "transform"):
        assert clf.transform(new).shape == (4, clf.n_features_)
    # scikit-learn: a binary decision_function is 1-D (positive: classes_[1]); one column per class beyond two
    decision = clf.decision_function(new)
    assert decision.shape == ((4,) if n_classes == 2 else (4, n_classes))
    if n_classes == 2:
        np.testing.assert_array_equal(clf.classes_[(decision > 0).astype(int)], clf.predict(new))


@pytest.mark.parametrize("names", [["zebra", "apple", "mango"], [10, 3, 7]], ids=["strings", "integers"])
@pytest.mark.parametrize("name", TINY)
def test_contract_classes_are_the_sorted_labels_and_probability_columns_follow_them(make, name, names):
    texts, labels = relabelled(3, names)
    clf = make(name).fit(texts, labels)
    assert clf.classes_.tolist() == sorted(names)
    predicted = clf.predict(texts)
    assert set(predicted.tolist()) <= set(names)
    assert predicted.dtype.kind == np.asarray(names).dtype.kind  # integer labels come back as integers
    probabilities = clf.predict_proba(texts)
    np.testing.assert_array_equal(clf.classes_[probabilities.argmax(axis=1)], predicted)
    if name in LEARNERS:  # right on the texts it learned: columns read in any other order would give wrong labels
        assert np.mean(predicted == np.asarray(labels)) >= 0.9


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_contract_get_params_set_params_and_clone_round_trip(estimator):
    params = estimator.get_params()
    assert set(params) == set(inspect.signature(type(estimator).__init__).parameters) - {"self"}
    copy = clone(estimator)
    assert copy is not estimator and copy.get_params() == params
    assert copy.set_params(**params) is copy and copy.get_params() == params
    copy.set_params(random_state=7)
    assert copy.random_state == 7 and estimator.random_state == params["random_state"] != 7
    assert {k: v for k, v in copy.get_params().items() if k != "random_state"} == \
        {k: v for k, v in params.items() if k != "random_state"}
    with pytest.raises(ValueError, match="no_such_parameter"):
        copy.set_params(no_such_parameter=1)


@pytest.mark.parametrize("name", TINY)
def test_contract_refit_gives_a_model_of_the_second_data(make, name):
    clf = make(name)
    first = clf.fit(*relabelled(2, ["up", "down"]))
    texts, labels = relabelled(3, [10, 3, 7])
    assert clf.fit(texts, labels) is clf is first
    assert clf.classes_.tolist() == [3, 7, 10]
    assert clf.predict_proba(texts).shape == (len(texts), 3)
    predicted = clf.predict(texts)
    assert set(predicted.tolist()) <= {3, 7, 10}
    if name in LEARNERS:
        assert np.mean(predicted == np.asarray(labels)) >= 0.9
    # a clone of the fitted model is a new, unfitted one with the same parameters
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    with pytest.raises(NotFittedError):
        copy.predict_proba(texts[:2])


NOT_FITTED_CASES = [
    pytest.param(estimator, method, id=f"{type(estimator).__name__}-{method}")
    for estimator in ESTIMATORS
    for method in ("predict", "predict_proba", "decision_function", "transform", "score") if hasattr(estimator, method)]


@pytest.mark.parametrize("estimator, method", NOT_FITTED_CASES)
def test_contract_every_method_raises_not_fitted_error_before_fit(estimator, method):
    arguments = (["a text"], ["a label"]) if method == "score" else (["a text"],)
    with pytest.raises(NotFittedError):
        getattr(clone(estimator), method)(*arguments)


def test_contract_a_pipeline_and_cross_validation_fit_clones(tiny_dir, tmp_path):
    """STC inside a scikit-learn Pipeline, and in cross_val_score: each fold's score is that of a clone fitted on
    the other fold (a one-split search inside each fit, to keep it short)."""
    clf = STCClassifier(tiny_dir, store_dir=str(tmp_path), cv=None, **FAST)
    texts, labels = planted_texts(2, per_class=24, shuffle=True)
    pipeline = Pipeline([("stc", clone(clf))]).fit(texts, labels)
    assert pipeline.predict(texts[:5]).shape == (5,)
    assert pipeline.score(texts, labels) >= 0.9
    folds = list(StratifiedKFold(2).split(texts, labels))
    scores = cross_val_score(clone(clf), texts, labels, cv=folds)
    by_hand = [clone(clf).fit([texts[i] for i in train], [labels[i] for i in train])
               .score([texts[i] for i in test], [labels[i] for i in test]) for train, test in folds]
    assert scores.tolist() == by_hand and (scores > 0.4).all()
    with pytest.raises(NotFittedError):
        clf.predict_proba(texts[:1])  # cross-validation fitted clones, never clf itself


# --- the docstring -----------------------------------------------------------------------------------------------

def _documented_names(docstring: str, section: str, next_section: str | None) -> set[str]:
    """Names documented as ``name : ...`` (or ``a, b : ...``) in one numpydoc section of a docstring."""
    import re

    text = docstring.split(f"{section}\n    {'-' * len(section)}")[1]
    if next_section:
        text = text.split(f"{next_section}\n    {'-' * len(next_section)}")[0]
    return {name.strip() for group in re.findall(r"(\w+(?:, \w+)*) : ", text) for name in group.split(",")}


def test_every_stc_parameter_and_fitted_attribute_is_documented(tiny_dir, tmp_path):
    parameters = set(inspect.signature(STCClassifier.__init__).parameters) - {"self"}
    documented = _documented_names(STCClassifier.__doc__, "Parameters", "Attributes")
    assert parameters - documented == set(), "parameters missing from the docstring"
    assert documented - parameters == set(), "the docstring documents parameters that do not exist"
    fitted = STCClassifier(tiny_dir, store_dir=str(tmp_path / "stores"), **small_params()).fit(TEXTS, LABELS)
    # set by fit, or read from readout_ (a property of the class)
    attributes = {name for name in dir(fitted) if name.endswith("_") and not name.startswith("_")
                  and hasattr(fitted, name)}
    assert len(attributes) >= 17
    assert attributes == _documented_names(STCClassifier.__doc__, "Attributes", None)
