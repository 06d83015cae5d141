"""The estimator contract of every family, the model package, and loading the older save layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from toxiguard.data.demo import make_demo_corpus
from toxiguard.data.validation import label_matrix, text_hashes
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models import create_model, load_model, model_families
from toxiguard.models.base import META_FILE
from toxiguard.models.blend import BlendModel
from toxiguard.models.package import PACKAGE_FILE, SEEN_TEXTS_FILE, ModelPackage
from toxiguard.models.reference import build_reference

SMALL = {"word_max_features": 2_000, "char_max_features": 2_000}
# One changed param per family: a value other than the default, JSON-safe.
CHANGES: dict[str, dict[str, Any]] = {
    "tfidf-lr": {"C": 4.0},
    "nbsvm": {"alpha": 0.5},
    "tfidf-svm": {"calibration_folds": 4},
    "complement-nb": {"alpha": 0.1},
    "transformer": {"max_length": 64},
    "blend": {"weight_step": 0.1},
    "cascade": {"max_auc_loss": 0.002},
}


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """Return a small demo corpus (templated, labelled by construction)."""
    return make_demo_corpus(400, seed=11)


def _texts(frame: pd.DataFrame) -> list[str]:
    return frame[TEXT_COLUMN].astype(str).tolist()


def _small_blend() -> BlendModel:
    blend = create_model(
        "blend",
        members=["complement-nb", "tfidf-lr"],
        member_params={"complement-nb": SMALL, "tfidf-lr": SMALL},
        weight_step=0.5,
    )
    assert isinstance(blend, BlendModel)
    return blend


def test_every_family_has_a_change_to_try() -> None:
    assert set(CHANGES) == set(model_families())


@pytest.mark.parametrize("family", sorted(CHANGES))
def test_get_params_set_params_and_clone_round_trip(family: str) -> None:
    model = create_model(family)
    params = model.get_params(deep=False)
    model.set_params(**CHANGES[family])
    changed = model.get_params(deep=False)
    assert {key: changed[key] for key in CHANGES[family]} == CHANGES[family]
    assert {k: v for k, v in changed.items() if k not in CHANGES[family]} == {
        k: v for k, v in params.items() if k not in CHANGES[family]
    }
    copy = clone(model)
    assert type(copy) is type(model) and copy is not model
    assert copy.json_params() == model.json_params()
    # The same family rebuilds from the JSON params, as a saved model is rebuilt.
    rebuilt = create_model(family, **json.loads(json.dumps(model.json_params())))
    assert rebuilt.json_params() == model.json_params()


def test_common_values_fill_only_params_the_family_has_and_were_not_given() -> None:
    common = {"seed": 7, "onnx_threads": 3}
    assert create_model("complement-nb", common).get_params()["seed"] == 7
    assert create_model("tfidf-lr", common, seed=1).get_params()["seed"] == 1
    transformer = create_model("transformer", common).get_params()
    assert transformer["seed"] == 7 and transformer["onnx_threads"] == 3
    blend = create_model("blend", common, members=["tfidf-lr", "nbsvm"])
    assert isinstance(blend, BlendModel)
    assert [member.get_params()["seed"] for _, member in blend.estimators] == [7, 7]


def test_a_cloned_model_is_unfitted_and_fits_to_the_same_scores(corpus: pd.DataFrame) -> None:
    texts, labels = _texts(corpus), label_matrix(corpus)
    model = create_model("tfidf-lr", **SMALL).fit(texts, labels)
    copy = clone(model)
    with pytest.raises(Exception, match="not fitted"):
        copy.predict_proba(texts[:3])
    np.testing.assert_array_equal(
        copy.fit(texts, labels).predict_proba(texts[:20]), model.predict_proba(texts[:20])
    )


def test_package_save_load_round_trip(corpus: pd.DataFrame, tmp_path: Path) -> None:
    train, held = corpus.iloc[:300], corpus.iloc[300:]
    model = create_model("complement-nb", **SMALL).fit(_texts(train), label_matrix(train))
    thresholds = np.linspace(0.3, 0.6, len(LABELS))
    probabilities = model.predict_proba(_texts(held))
    reference = build_reference(_texts(held), probabilities, thresholds, _texts(train), rows=50)
    seen = text_hashes(_texts(train))
    package = ModelPackage(model, thresholds, reference, seen)

    loaded = ModelPackage.load(package.save(tmp_path / "package"))

    assert loaded.family == "complement-nb"
    np.testing.assert_array_equal(loaded.thresholds, thresholds)
    np.testing.assert_array_equal(loaded.predict_proba(_texts(held)), probabilities)
    np.testing.assert_array_equal(loaded.predict_flags(_texts(held)), probabilities >= thresholds)
    assert loaded.seen_texts is not None
    np.testing.assert_array_equal(loaded.seen_texts, seen)
    assert loaded.reference is not None and len(loaded.reference) == 50
    pd.testing.assert_frame_equal(loaded.reference.frame, reference.frame)


def test_a_package_without_reference_or_hashes_loads_with_none(
    corpus: pd.DataFrame, tmp_path: Path
) -> None:
    model = create_model("complement-nb", **SMALL).fit(_texts(corpus), label_matrix(corpus))
    loaded = ModelPackage.load(ModelPackage(model).save(tmp_path / "bare"))
    assert loaded.reference is None and loaded.seen_texts is None
    np.testing.assert_array_equal(loaded.thresholds, np.full(len(LABELS), 0.5))


def _write_old_meta(directory: Path, family: str, params: dict[str, Any], thresholds: Any) -> None:
    """Write the meta file as models were saved before packages: family, params, labels,
    thresholds in one file, and no package file."""
    meta = {
        "family": family,
        "params": params,
        "labels": list(LABELS),
        "thresholds": [float(t) for t in thresholds],
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2))
    (directory / PACKAGE_FILE).unlink(missing_ok=True)


def test_a_model_saved_in_the_old_layout_loads(corpus: pd.DataFrame, tmp_path: Path) -> None:
    texts, labels = _texts(corpus), label_matrix(corpus)
    model = create_model("tfidf-lr", **SMALL).fit(texts, labels)
    directory = model.save(tmp_path / "old")
    # The old params: every featurizer, common and family value, lists for the ranges.
    old_params = {**json.loads(json.dumps(model.json_params())), "cleaning": ["lowercase"]}
    thresholds = np.linspace(0.25, 0.5, len(LABELS))
    _write_old_meta(directory, "tfidf-lr", old_params, thresholds)
    np.save(directory / SEEN_TEXTS_FILE, text_hashes(texts[:10]))

    # Saved before manifests too: such directories load when unverified ones are allowed.
    loaded = ModelPackage.load(directory, allow_unverified=True)

    assert loaded.model.get_params()["cleaning"] == ["lowercase"]
    np.testing.assert_array_equal(loaded.thresholds, thresholds)
    assert loaded.seen_texts is not None and len(loaded.seen_texts) == 10
    np.testing.assert_array_equal(loaded.predict_proba(texts[:30]), model.predict_proba(texts[:30]))


def test_a_blend_saved_in_the_old_layout_loads_its_members_own_params(
    corpus: pd.DataFrame, tmp_path: Path
) -> None:
    texts, labels = _texts(corpus), label_matrix(corpus)
    blend = _small_blend().fit(texts, labels)
    directory = blend.save(tmp_path / "old-blend")
    # Before `estimators`, a blend named its members by family; each member's own meta held
    # its params (here the small vocabularies, which the blend's member_params did not give).
    for name, member in blend.members_.items():
        _write_old_meta(directory / "members" / name, name, member.json_params(), [0.5] * 6)
    old_params = {
        "members": ["complement-nb", "tfidf-lr"],
        "member_params": {},
        "weight_step": 0.5,
        "holdout_share": 0.1,
        "seed": 42,
    }
    _write_old_meta(directory, "blend", old_params, np.full(len(LABELS), 0.4))

    # Saved before manifests too: such directories load when unverified ones are allowed.
    loaded = ModelPackage.load(directory, allow_unverified=True)

    assert isinstance(loaded.model, BlendModel)
    member = loaded.model.members_["tfidf-lr"]
    assert member.get_params()["word_max_features"] == SMALL["word_max_features"]
    np.testing.assert_array_equal(loaded.thresholds, np.full(len(LABELS), 0.4))
    np.testing.assert_allclose(loaded.predict_proba(texts[:30]), blend.predict_proba(texts[:30]))


def test_a_new_blend_round_trips_through_its_saved_specs(
    corpus: pd.DataFrame, tmp_path: Path
) -> None:
    texts, labels = _texts(corpus), label_matrix(corpus)
    blend = _small_blend().fit(texts, labels)
    loaded = load_model(blend.save(tmp_path / "blend"))
    assert isinstance(loaded, BlendModel)
    assert loaded.member_names == blend.member_names
    np.testing.assert_allclose(loaded.predict_proba(texts[:30]), blend.predict_proba(texts[:30]))
