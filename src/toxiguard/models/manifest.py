"""The manifest of a saved model directory: every file's size and sha256, checked before loading.

`write_manifest` lists every other file under the directory (relative POSIX paths, sorted) in
`MANIFEST_FILE`; `verify_manifest` reads the directory back and raises ModelIntegrityError, one
line naming the directory and the first problem, unless every listed file is there with its
size and hash and no unlisted file could hold code (`CODE_SUFFIXES`: pickles that would run
code when loaded). It runs before anything in the directory is unpickled. `expected_sha256`
(recorded apart from the artifact: the registry version's `MANIFEST_TAG`, the server's
`current.json`) catches an artifact replaced together with its manifest.

Directories saved before manifests existed have none. The rule for them: refused, with an error
naming the setting `TOXIGUARD_ALLOW_UNVERIFIED_MODELS`; with `allow_unverified` (that setting)
they load, with a logged warning. A directory that has a manifest is always verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Final

from toxiguard.errors import ModelIntegrityError

logger = logging.getLogger(__name__)

MANIFEST_FILE: Final = "toxiguard_manifest.json"
MANIFEST_VERSION: Final = 1
#: The registry version tag holding the sha256 of the version's manifest file.
MANIFEST_TAG: Final = "toxiguard.manifest_sha256"
#: The setting that lets directories without a manifest load (named in the refusal).
ALLOW_SETTING: Final = "TOXIGUARD_ALLOW_UNVERIFIED_MODELS"
#: Suffixes of files whose loading can run code: one of them not in the manifest is refused.
CODE_SUFFIXES: Final = frozenset(
    {".pkl", ".pickle", ".joblib", ".dill", ".pt", ".pth", ".bin", ".ckpt", ".npz", ".py"}
)
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(directory: Path) -> list[str]:
    """Return the relative POSIX paths of every file under `directory` but the manifest, sorted."""
    return sorted(
        path.relative_to(directory).as_posix()
        for path in directory.rglob("*")
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST_FILE
    )


def write_manifest(directory: str | Path) -> str:
    """Write the manifest of every file under `directory`; return the manifest's own sha256."""
    root = Path(directory)
    files = {
        name: {"size": (root / name).stat().st_size, "sha256": file_sha256(root / name)}
        for name in _files(root)
    }
    text = json.dumps({"format": MANIFEST_VERSION, "files": files}, indent=2, sort_keys=True)
    (root / MANIFEST_FILE).write_text(text + "\n")
    return file_sha256(root / MANIFEST_FILE)


def _read_manifest(root: Path) -> dict[str, dict[str, Any]]:
    """Return the manifest's file entries, or raise ModelIntegrityError if it is unreadable."""
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text())
        files = manifest["files"]
        if manifest["format"] != MANIFEST_VERSION or not isinstance(files, dict):
            raise ValueError(f"unknown manifest format {manifest['format']!r}")
        if not all(isinstance(entry["size"], int) for entry in files.values()):
            raise ValueError("a file's size is not a number")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelIntegrityError(
            f"{root}: the model's manifest {MANIFEST_FILE} is unreadable ({error})"
        ) from error
    return files


def verify_manifest(
    directory: str | Path,
    *,
    expected_sha256: str | None = None,
    allow_unverified: bool = False,
) -> bool:
    """Return True once every file of the directory matches its manifest; False for a directory
    without one that `allow_unverified` lets load. Raises ModelIntegrityError otherwise."""
    root = Path(directory)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        if expected_sha256 is not None:
            raise ModelIntegrityError(
                f"{root}: the model's manifest {MANIFEST_FILE} is missing, but one was recorded "
                f"(sha256 {expected_sha256[:12]}...)"
            )
        if not allow_unverified:
            raise ModelIntegrityError(
                f"{root}: no {MANIFEST_FILE} (saved before model manifests existed), so its "
                f"files cannot be verified; retrain it, or set {ALLOW_SETTING}=true to load "
                "such models unverified"
            )
        logger.warning(
            "%s has no %s: loading it unverified (%s)", root, MANIFEST_FILE, ALLOW_SETTING
        )
        return False
    if expected_sha256 is not None:
        actual = file_sha256(manifest_path)
        if actual != expected_sha256:
            raise ModelIntegrityError(
                f"{root}: the model's manifest {MANIFEST_FILE} is not the one recorded for it "
                f"(sha256 {actual[:12]}..., expected {expected_sha256[:12]}...)"
            )
    files = _read_manifest(root)
    for name in sorted(files):
        _check_file(root, name, files[name])
    for name in _files(root):
        if name not in files and Path(name).suffix.lower() in CODE_SUFFIXES:
            raise ModelIntegrityError(
                f"{root}: unexpected file {name} (not in the model's manifest, and loading it "
                "could run code)"
            )
    return True


def _check_file(root: Path, name: str, entry: dict[str, Any]) -> None:
    """Raise ModelIntegrityError when one listed file is missing, resized or changed."""
    path = root / name
    if ".." in Path(name).parts or Path(name).is_absolute():
        raise ModelIntegrityError(f"{root}: the manifest names a file outside it: {name}")
    if not path.is_file():
        raise ModelIntegrityError(f"{root}: {name} is missing (listed in the model's manifest)")
    size, expected = int(entry["size"]), str(entry["sha256"])
    actual_size = path.stat().st_size
    if actual_size != size:
        what = "truncated" if actual_size < size else "changed"
        raise ModelIntegrityError(
            f"{root}: {name} is {what}: {actual_size:,} bytes, expected {size:,} (sha256 mismatch)"
        )
    actual = file_sha256(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{root}: {name} is changed: sha256 {actual[:12]}..., expected {expected[:12]}..."
        )
