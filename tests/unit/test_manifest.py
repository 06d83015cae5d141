"""Model manifests: written on save, checked before anything is unpickled, one clear line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from toxiguard.data.demo import make_demo_corpus
from toxiguard.data.validation import label_matrix
from toxiguard.errors import ModelIntegrityError, ModelNotFoundError
from toxiguard.labels import TEXT_COLUMN
from toxiguard.models import create_model
from toxiguard.models.manifest import (
    ALLOW_SETTING,
    MANIFEST_FILE,
    file_sha256,
    verify_manifest,
    write_manifest,
)
from toxiguard.models.package import ModelPackage
from toxiguard.models.tfidf.linear import STATE_FILE

SMALL = {"word_max_features": 2_000, "char_max_features": 4_000}


class _Planted:
    """A pickle that, once unpickled, creates a marker file (what a planted payload would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path, str]]:
        return (Path.write_text, (self.marker, "ran"))


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    """Return a small fitted complement-nb package."""
    corpus = make_demo_corpus(400, seed=5)
    model = create_model("complement-nb", **SMALL)
    model.fit(corpus[TEXT_COLUMN].tolist(), label_matrix(corpus))
    return ModelPackage(model, np.full(6, 0.4), seen_texts=np.arange(5, dtype=np.uint64))


@pytest.fixture
def saved(package: ModelPackage, tmp_path: Path) -> Path:
    """Return a freshly saved copy of the package."""
    return package.save(tmp_path / "package")


def test_save_writes_a_sorted_manifest_of_every_other_file(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    files = manifest["files"]
    assert manifest["format"] == 1
    assert list(files) == sorted(files)
    on_disk = sorted(
        p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.name != MANIFEST_FILE
    )
    assert list(files) == on_disk and STATE_FILE in files
    state = saved / STATE_FILE
    assert files[STATE_FILE] == {"size": state.stat().st_size, "sha256": file_sha256(state)}
    assert verify_manifest(saved, expected_sha256=file_sha256(saved / MANIFEST_FILE)) is True


def test_a_verified_package_loads_and_predicts_the_same(package: ModelPackage, saved: Path) -> None:
    texts = ["you idiot", "thanks for the edit"]
    loaded = ModelPackage.load(saved, expected_manifest_sha256=file_sha256(saved / MANIFEST_FILE))
    np.testing.assert_array_equal(loaded.predict_proba(texts), package.predict_proba(texts))


def test_a_truncated_file_is_named_with_both_sizes(saved: Path) -> None:
    state = saved / STATE_FILE
    size = state.stat().st_size
    state.write_bytes(state.read_bytes()[: size // 2])
    with pytest.raises(ModelIntegrityError) as caught:
        ModelPackage.load(saved)
    message = str(caught.value)
    assert "\n" not in message
    assert str(saved) in message and STATE_FILE in message and "truncated" in message
    assert f"{size:,}" in message and f"{size // 2:,}" in message


def test_a_changed_file_of_the_same_size_is_a_hash_mismatch(saved: Path) -> None:
    target = saved / "seen_texts.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match=r"seen_texts\.npy is changed: sha256"):
        ModelPackage.load(saved)


def test_a_missing_file_is_named(saved: Path) -> None:
    (saved / "seen_texts.npy").unlink()
    with pytest.raises(ModelIntegrityError, match=r"seen_texts\.npy is missing"):
        ModelPackage.load(saved)


def test_the_planted_payload_runs_when_unpickled(tmp_path: Path) -> None:
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Planted(control)))  # the control: it does run
    assert control.read_text() == "ran"


def test_a_planted_pickle_is_refused_and_never_run(saved: Path, tmp_path: Path) -> None:
    marker = tmp_path / "planted-ran"
    (saved / "extra.pkl").write_bytes(pickle.dumps(_Planted(marker)))
    with pytest.raises(ModelIntegrityError, match=r"unexpected file extra\.pkl"):
        ModelPackage.load(saved)
    assert not marker.exists()


def test_a_replaced_state_with_a_rewritten_manifest_is_caught_by_the_recorded_hash(
    saved: Path, tmp_path: Path
) -> None:
    recorded = file_sha256(saved / MANIFEST_FILE)
    marker = tmp_path / "planted-ran"
    (saved / STATE_FILE).write_bytes(pickle.dumps(_Planted(marker)))
    write_manifest(saved)  # the attacker rewrites the manifest too
    with pytest.raises(ModelIntegrityError, match="not the one recorded for it"):
        ModelPackage.load(saved, expected_manifest_sha256=recorded)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content", ["not json", json.dumps({"format": 99, "files": {}}), json.dumps({"files": []})]
)
def test_an_unreadable_manifest_is_refused(saved: Path, content: str) -> None:
    (saved / MANIFEST_FILE).write_text(content)
    with pytest.raises(ModelIntegrityError, match=f"{MANIFEST_FILE} is unreadable"):
        ModelPackage.load(saved)


def test_a_manifest_naming_a_file_outside_is_refused(saved: Path) -> None:
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    manifest["files"]["../outside"] = {"size": 1, "sha256": "0" * 64}
    (saved / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="outside it"):
        ModelPackage.load(saved)


def test_a_missing_manifest_is_refused_when_one_was_recorded(saved: Path) -> None:
    recorded = file_sha256(saved / MANIFEST_FILE)
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match="is missing, but one was recorded"):
        ModelPackage.load(saved, expected_manifest_sha256=recorded, allow_unverified=True)


def test_a_legacy_directory_is_refused_naming_the_setting_unless_allowed(
    package: ModelPackage, saved: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (saved / MANIFEST_FILE).unlink()
    with pytest.raises(ModelIntegrityError, match=f"saved before model manifests.*{ALLOW_SETTING}"):
        ModelPackage.load(saved)
    loaded = ModelPackage.load(saved, allow_unverified=True)
    assert "unverified" in caplog.text
    np.testing.assert_array_equal(loaded.thresholds, package.thresholds)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"", "EOFError"),
        (bytes(range(256)) * 4, ""),
        (pickle.dumps({"something": "else"}), "KeyError"),
    ],
)
def test_a_foreign_state_in_an_unverified_directory_is_one_error_line(
    saved: Path, payload: bytes, error: str
) -> None:
    (saved / MANIFEST_FILE).unlink()
    (saved / STATE_FILE).write_bytes(payload)
    with pytest.raises(ModelIntegrityError, match=r"linear\.joblib: not a readable") as caught:
        ModelPackage.load(saved, allow_unverified=True)
    assert error in str(caught.value) and "\n" not in str(caught.value)


def test_a_directory_without_any_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no saved toxiguard model"):
        ModelPackage.load(tmp_path)


def test_unreadable_extra_files_of_other_kinds_are_allowed(saved: Path) -> None:
    (saved / "NOTES.txt").write_text("left by a person")
    assert verify_manifest(saved) is True
