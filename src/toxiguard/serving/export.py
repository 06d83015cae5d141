"""Exported models: a bundle that `toxiguard serve --model-dir` serves without a registry, and a
self-contained Hugging Face Space (Gradio app, pinned requirements, model card, the bundle).

A bundle is the verified model package plus `BUNDLE_FILE` (name, version, family, metrics, data
source, export time and the sha256 of the package's manifest, checked when it is loaded). A
Space holds a bundle under `SPACE_MODEL_DIR`, `app.py`, `requirements.txt`, `README.md`, and
the toxiguard modules the app imports (`VENDORED`), copied from this install: the pickled
models name toxiguard's classes. They are copied rather than installed from a wheel because
the toxiguard distribution requires MLflow, and because a Space's build runs `pip install -r
requirements.txt` with only that file mounted, so a local wheel named there cannot be found.

This module is one of those copied into a Space: at import it needs neither MLflow nor the
server, only the models and `serving.rendering`; the registry is imported by `export_source`
alone, Gradio by `space_app` alone.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

import toxiguard
from toxiguard.errors import (
    MissingExtraError,
    ModelIntegrityError,
    ModelNotFoundError,
    ToxiguardError,
)
from toxiguard.labels import LABELS
from toxiguard.models.base import ToxicityModel
from toxiguard.models.explain import explain
from toxiguard.models.manifest import MANIFEST_FILE, file_sha256
from toxiguard.models.package import ModelPackage
from toxiguard.serving.rendering import CSS, highlighted_html, scores_html

if TYPE_CHECKING:
    import gradio as gr

    from toxiguard.settings import Settings

BUNDLE_FILE: Final = "bundle.json"
BUNDLE_FORMAT: Final = 1
SPACE_MODEL_DIR: Final = "model"
LICENSE: Final = "apache-2.0"
#: What a Space's app imports of toxiguard, relative to the package (folders copied whole).
VENDORED: Final = (
    "__init__.py",
    "py.typed",
    "errors.py",
    "labels.py",
    "features",
    "models",
    "serving/__init__.py",
    "serving/rendering.py",
    "serving/export.py",
)
#: The distributions a Space installs, pinned to this install's versions: Gradio and what the
#: copied modules import at load and predict time (pandas and pyarrow: the monitoring reference
#: inside every package). The transformer family adds its ONNX runtime and tokenizer.
SPACE_REQUIREMENTS: Final = (
    "gradio",
    "numpy",
    "scipy",
    "scikit-learn",
    "joblib",
    "pandas",
    "pyarrow",
)
ONNX_REQUIREMENTS: Final = ("onnxruntime", "tokenizers")
EXAMPLES: Final = (
    "Thanks for fixing the references, the article reads much better now.",
    "You are a complete idiot and nobody wants you here.",
)
APP_PY: Final = '''"""toxiguard's Hugging Face Space: one comment scored for the six Jigsaw labels.

Runs offline: pip install -r requirements.txt && python app.py (port: GRADIO_SERVER_PORT).
"""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from toxiguard.serving.export import run_space  # noqa: E402  (after the setting above)

if __name__ == "__main__":
    run_space(Path(__file__).resolve().parent)
'''


@dataclass(frozen=True)
class ExportSource:
    """A registered model to export: the package, what the registry says of it, its data."""

    package: ModelPackage
    info: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)


def export_source(settings: Settings, ref: str | None) -> ExportSource:
    """Return the registered model `ref` (None: the champion), verified, with its data source."""
    # Imported here: this module runs inside an exported Space, which has no MLflow.
    from toxiguard.registry.client import (  # noqa: PLC0415
        load_toxicity_model,
        resolve_model_uri,
    )
    from toxiguard.registry.versions import list_versions  # noqa: PLC0415

    package, info = load_toxicity_model(resolve_model_uri(ref, settings), settings)
    rows = [r for r in list_versions(settings) if r["version"] == info.get("version")]
    keys = ("dataset_file", "dataset_rows", "dataset_fingerprint", "demo_data")
    data = {key: rows[0].get(key) for key in keys} if rows else {}
    return ExportSource(package, info, data)


def _empty_target(directory: Path) -> Path:
    """Return `directory`, created; ToxiguardError when it exists and is not empty."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ToxiguardError(f"{directory} exists and is not empty: export into a new directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def write_bundle(source: ExportSource, directory: str | Path) -> Path:
    """Save the package and its `BUNDLE_FILE` into a new (or empty) directory; return it."""
    target = _empty_target(Path(directory))
    source.package.save(target)
    info = source.info
    bundle = {
        "format": BUNDLE_FORMAT,
        "name": info.get("name"),
        "version": info.get("version"),
        "family": source.package.family,
        "metrics": {str(k): float(v) for k, v in (info.get("metrics") or {}).items()},
        "data": source.data,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "exported_from": {"uri": info.get("uri"), "run_id": info.get("run_id")},
        "toxiguard_version": toxiguard.__version__,
        "manifest_sha256": file_sha256(target / MANIFEST_FILE),
    }
    (target / BUNDLE_FILE).write_text(json.dumps(bundle, indent=2, default=str) + "\n")
    return target


def load_bundle(
    directory: str | Path, *, allow_unverified: bool = False
) -> tuple[ModelPackage, dict[str, Any]]:
    """Return the bundle's package, verified against the manifest hash in its `BUNDLE_FILE`,
    and its description (name, version, family, metrics, uri: the bundle's directory)."""
    path = Path(directory)
    if not (path / BUNDLE_FILE).is_file():
        raise ModelNotFoundError(
            f"{path}: not a toxiguard bundle (no {BUNDLE_FILE}); write one with "
            "`toxiguard export bundle DIR`"
        )
    try:
        bundle = json.loads((path / BUNDLE_FILE).read_text())
        expected = str(bundle["manifest_sha256"])
        if bundle["format"] != BUNDLE_FORMAT:
            raise ValueError(f"unknown bundle format {bundle['format']!r}")
        metrics = {str(k): float(v) for k, v in dict(bundle.get("metrics") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ModelIntegrityError(f"{path}: {BUNDLE_FILE} is unreadable ({error})") from error
    package = ModelPackage.load(
        path, expected_manifest_sha256=expected, allow_unverified=allow_unverified
    )
    if bundle.get("family") not in (None, package.family):
        raise ModelIntegrityError(
            f"{path}: {BUNDLE_FILE} names family {bundle['family']}, the model is {package.family}"
        )
    version = bundle.get("version")
    info = {
        "uri": str(path),
        "name": bundle.get("name"),
        "version": int(version) if version is not None else None,
        "aliases": [],
        "run_id": (bundle.get("exported_from") or {}).get("run_id"),
        "family": package.family,
        "thresholds": [float(t) for t in package.thresholds],
        "metrics": metrics,
        "data": bundle.get("data") or {},
        "exported_at": bundle.get("exported_at"),
        "exported_from": bundle.get("exported_from"),
    }
    return package, info


# ---------------------------------------------------------------- the Space
def write_space(source: ExportSource, directory: str | Path) -> Path:
    """Write a Hugging Face Space (app.py, requirements.txt, README.md, the toxiguard modules,
    the bundle) into a new (or empty) directory; return it."""
    requirements = space_requirements(source.package)  # before writing: gradio may be missing
    target = _empty_target(Path(directory))
    write_bundle(source, target / SPACE_MODEL_DIR)
    package_root = Path(toxiguard.__file__).parent
    for name in VENDORED:
        origin, copy = package_root / name, target / "toxiguard" / name
        if origin.is_dir():
            shutil.copytree(
                origin, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
            )
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, copy)
    (target / "app.py").write_text(APP_PY)
    (target / "requirements.txt").write_text(
        "".join(f"{name}=={version}\n" for name, version in requirements.items())
    )
    (target / "README.md").write_text(model_card(source, requirements["gradio"]))
    return target


def space_requirements(package: ModelPackage) -> dict[str, str]:
    """Return the Space's distributions and this install's version of each (gradio first)."""
    names = list(SPACE_REQUIREMENTS)
    if _needs_onnx(package):
        names += ONNX_REQUIREMENTS
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError as error:
            extra = "ui" if name == "gradio" else "all"
            raise MissingExtraError("toxiguard export space", extra, name) from error
    return versions


def _needs_onnx(package: ModelPackage) -> bool:
    """Return True when the model, or a model it is built of, is the transformer family."""
    return _has_transformer(package.model)


def _has_transformer(model: ToxicityModel) -> bool:
    """Return True when `model` or any of its parts, at any depth, is a transformer."""
    return model.family == "transformer" or any(_has_transformer(part) for part in model.parts())


def model_card(source: ExportSource, gradio_version: str) -> str:
    """Return the Space's README.md: its YAML front matter and the model card."""
    info, metrics = source.info, source.info.get("metrics") or {}
    name, version = info.get("name") or "toxiguard", info.get("version")
    front = {
        "title": f"{name} v{version}" if version is not None else name,
        "emoji": "🛡️",
        "colorFrom": "red",
        "colorTo": "gray",
        "sdk": "gradio",
        "sdk_version": gradio_version,
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "app_file": "app.py",
        "license": LICENSE,
        "pinned": False,
    }
    lines = [
        "---",
        *(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in front.items()),
        "---",
        "",
    ]
    lines += [
        f"# {name} version {version} ({source.package.family})",
        "",
        "Scores a comment for the six Jigsaw labels; the bars mark each label's decision "
        "threshold, flagged labels are highlighted, with the words that raised them.",
        "",
        "## Model card",
        "",
        f"- Family: `{source.package.family}`",
        f"- Registered as: `{name}` version {version} (run `{info.get('run_id')}`)",
        f"- Exported: {datetime.now(UTC).isoformat(timespec='seconds')}, toxiguard "
        f"{toxiguard.__version__}",
        f"- Data: {_data_line(source.data)}",
        "",
        "| label | test ROC-AUC | threshold |",
        "|---|---|---|",
    ]
    for label, threshold in zip(LABELS, source.package.thresholds, strict=True):
        lines.append(
            f"| {label} | {_metric(metrics, f'test_roc_auc_{label}')} | {float(threshold):.10g} |"
        )
    lines += [f"| **mean** | **{_metric(metrics, 'test_roc_auc_mean')}** | |", ""]
    if source.package.audit is not None:
        from toxiguard.training.audit import (  # noqa: PLC0415
            AuditReport,
            audit_summary,
            robustness_rows,
        )

        report = AuditReport.from_dict(source.package.audit)
        lines += [
            "## Bias and robustness",
            "",
            *(f"- {line}" for line in audit_summary(report)),
            "",
            "| obfuscation | mean ROC-AUC | change |",
            "|---|---|---|",
            *(
                f"| {row['perturbation']} | {row['mean_roc_auc']} | {row['change']} |"
                for row in robustness_rows(report.robustness)
            ),
            "",
        ]
    lines += [
        "## Run it",
        "",
        "```",
        "pip install -r requirements.txt && python app.py",
        "```",
        "",
        "Offline: no MLflow, no torch. The model in `model/` is verified against the manifest "
        f"hash in `model/{BUNDLE_FILE}` before it is loaded.",
        "",
    ]
    return "\n".join(lines)


def _metric(metrics: Mapping[str, Any], key: str) -> str:
    """Return a metric to four decimals, or 'n/a' when the run has none."""
    value = metrics.get(key)
    return f"{float(value):.4f}" if value is not None and np.isfinite(float(value)) else "n/a"


def _data_line(data: Mapping[str, Any]) -> str:
    """Return the data source in words: file, rows, fingerprint, demo corpus or not."""
    if not data or not data.get("dataset_file"):
        return "not recorded"
    rows = data.get("dataset_rows")
    demo = " (the synthetic demo corpus, not the Jigsaw data)" if data.get("demo_data") else ""
    fingerprint = str(data.get("dataset_fingerprint") or "")[:12]
    counted = f", {rows:,} rows" if isinstance(rows, int) else ""
    return f"`{data['dataset_file']}`{counted}, fingerprint `{fingerprint}`{demo}"


def score_comment(package: ModelPackage, text: str) -> str:
    """Return the HTML the UI's Comment tab shows for one comment: bars, flags, words."""
    probabilities = np.asarray(package.predict_proba([text]), dtype=np.float64)[0]
    flags = probabilities >= package.thresholds
    body = scores_html(probabilities, flags, package.thresholds)
    return body + highlighted_html(explain(package.model, text), flags)


def space_app(directory: Path) -> gr.Blocks:
    """Return the Space's Gradio app for the bundle under `directory` (loaded and verified)."""
    import gradio as gr  # noqa: PLC0415  (the 'ui' extra: bundles export and serve without it)

    package, info = load_bundle(directory / SPACE_MODEL_DIR)

    def score(text: str) -> str:
        if not text or not text.strip():
            raise gr.Error("Type a comment first.")
        return score_comment(package, text)

    def predict(text: str) -> dict[str, Any]:
        probabilities = np.asarray(package.predict_proba([text]), dtype=np.float64)[0]
        flags = probabilities >= package.thresholds
        return {
            "scores": dict(zip(LABELS, map(float, probabilities), strict=True)),
            "flagged": [label for label, hit in zip(LABELS, flags, strict=True) if hit],
            "model": {"name": info["name"], "version": info["version"], "family": package.family},
        }

    with gr.Blocks(title="toxiguard", analytics_enabled=False) as blocks:
        gr.Markdown(
            f"# toxiguard\nScores a comment for the six Jigsaw labels. Model **{info['name']}** "
            f"version **{info['version']}** ({package.family})."
        )
        comment = gr.Textbox(
            label="Comment", lines=4, placeholder="Type or paste a comment", elem_id="comment-input"
        )
        button = gr.Button("Score", variant="primary", elem_id="score-button")
        result = gr.HTML(elem_id="scores")
        gr.Examples(examples=list(EXAMPLES), inputs=comment, label="Examples")
        button.click(score, inputs=comment, outputs=result, api_name="score")
        comment.submit(score, inputs=comment, outputs=result, api_visibility="private")
        # The scores as numbers (the HTML rounds them to six decimals), for API clients.
        gr.api(predict, api_name="predict")  # type: ignore[attr-defined]
    built: gr.Blocks = blocks
    return built


def run_space(directory: Path) -> None:
    """Serve the Space's app until interrupted (address and port: GRADIO_SERVER_NAME/PORT)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    space_app(directory).launch(css=CSS, ssr_mode=False, mcp_server=False, show_error=True)
