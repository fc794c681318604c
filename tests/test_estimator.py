"""stc._estimator and the scikit-learn contract of every stc estimator (STC and the baselines)."""

from __future__ import annotations

import warnings

import pytest
from sklearn.base import clone
from sklearn.exceptions import SkipTestWarning
from sklearn.utils import estimator_checks, get_tags

from stc import STCClassifier
from stc.baselines import EmbeddingClassifier, FineTuneClassifier, ICLClassifier, SetFitClassifier

from ._helpers import LABELS, TEXTS, small_params

ESTIMATORS = [STCClassifier(model="minilm", etas=(0.5,), final_Cs=(1.0,), show_progress_bar=False),
              EmbeddingClassifier(model="minilm", show_progress_bar=False),
              FineTuneClassifier(model="minilm", epochs=1, show_progress_bar=False),
              ICLClassifier(model="smollm2", show_progress_bar=False),
              SetFitClassifier(model="minilm", show_progress_bar=False)]
#: The checks of scikit-learn's common suite that need no numeric X: they read parameters, tags and the class.
#: check_estimator itself runs none of its data checks for string input (it says so with a SkipTestWarning).
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
def test_check_estimator_runs_and_passes(estimator):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = estimator_checks.check_estimator(clone(estimator), on_fail=None)
    # what runs for string input: the cloneability check; every data check is skipped, with a warning that says so
    assert [(r["check_name"], r["status"]) for r in results] == [("check_estimator_cloneable", "passed")]
    assert any(issubclass(w.category, SkipTestWarning) and "string=True" in str(w.message) for w in caught)


@pytest.mark.parametrize("check", API_CHECKS)
@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_scikit_learn_api_checks_that_need_no_numeric_data_pass(estimator, check):
    getattr(estimator_checks, check)(type(estimator).__name__, clone(estimator))


def _documented_names(docstring: str, section: str, next_section: str | None) -> set[str]:
    """Names documented as ``name : ...`` (or ``a, b : ...``) in one numpydoc section of a docstring."""
    import re

    text = docstring.split(f"{section}\n    {'-' * len(section)}")[1]
    if next_section:
        text = text.split(f"{next_section}\n    {'-' * len(next_section)}")[0]
    return {name.strip() for group in re.findall(r"(\w+(?:, \w+)*) : ", text) for name in group.split(",")}


def test_every_stc_parameter_and_fitted_attribute_is_documented(tiny_dir, tmp_path):
    import inspect

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
