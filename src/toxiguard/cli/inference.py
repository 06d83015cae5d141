"""Commands that use a registered model: evaluate, predict, score a file, serve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import (
    console,
    counting_progress,
    installed,
    settings_with,
)
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.settings import get_settings

commands = typer.Typer()

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Registered model: a version number, an alias, or a models:/ or runs:/ URI. "
        "Default: the champion.",
    ),
]


@commands.command()
def evaluate(
    data_path: Annotated[Path, typer.Option("--data", "-d", help="Labelled file to score.")],
    model: ModelOption = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Score a labelled file with a registered model; print per-label metrics."""
    from toxiguard.data.validation import label_matrix, load_dataset
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
    from toxiguard.training.evaluation import evaluate

    settings = get_settings()
    dataset = load_dataset(data_path)
    uri = resolve_model_uri(model, settings)
    loaded, info = load_toxicity_model(uri, settings)
    texts = dataset.frame[TEXT_COLUMN].astype(str).tolist()
    report = evaluate(label_matrix(dataset.frame), loaded.predict_proba(texts), loaded.thresholds)
    report["model"] = {"uri": uri, **{k: v for k, v in info.items() if k != "metrics"}}
    report["data"] = {
        "source": dataset.source,
        "fingerprint": dataset.fingerprint,
        "rows": len(dataset.frame),
        "dropped": dataset.dropped,
    }
    _print_report(report, f"{uri} on {dataset.source}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2, default=str))
        console.print(f"report written to {json_out}")


@commands.command()
def predict(
    texts: Annotated[list[str], typer.Argument(help="One or more comments.")],
    model: ModelOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the six probabilities and the flagged labels for each comment."""
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri

    settings = get_settings()
    uri = resolve_model_uri(model, settings)
    loaded, info = load_toxicity_model(uri, settings)
    probabilities = loaded.predict_proba(texts)
    flags = probabilities >= loaded.thresholds
    if as_json:
        predictions = [
            {
                "text": text,
                "scores": dict(zip(LABELS, map(float, scores), strict=True)),
                "flagged": [label for label, hit in zip(LABELS, hits, strict=True) if hit],
            }
            for text, scores, hits in zip(texts, probabilities, flags, strict=True)
        ]
        console.print_json(json.dumps({"model": info, "predictions": predictions}, default=str))
        return
    for text, scores, hits in zip(texts, probabilities, flags, strict=True):
        table = Table(title=_shorten(text), show_edge=False, title_justify="left")
        table.add_column("label")
        table.add_column("probability", justify="right")
        table.add_column("threshold", justify="right")
        table.add_column("flagged")
        for label, probability, threshold, hit in zip(
            LABELS, scores, loaded.thresholds, hits, strict=True
        ):
            table.add_row(
                label, f"{probability:.3f}", f"{threshold:.3f}", "[bold red]yes[/]" if hit else ""
            )
        console.print(table)
    console.print(f"model {info.get('name')} version {info.get('version')} ({uri})")


@commands.command()
def explain(
    text: Annotated[str, typer.Argument(help="The comment to explain.")],
    model: ModelOption = None,
    labels: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="A label to explain (repeatable). Default: all six."),
    ] = None,
    top: Annotated[int, typer.Option(help="Words shown per label.", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print each label's score and the words that raised it most (with character offsets)."""
    from toxiguard.errors import ToxiguardError
    from toxiguard.models.explain import explain as explain_text
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
    from toxiguard.serving.explanations import label_explanations

    unknown = sorted(set(labels or ()) - set(LABELS))
    if unknown:
        raise ToxiguardError(f"unknown label(s) {unknown}; known: {', '.join(LABELS)}")
    if not text.strip():
        raise ToxiguardError("the comment is empty: give the text to explain")
    settings = get_settings()
    uri = resolve_model_uri(model, settings)
    loaded, info = load_toxicity_model(uri, settings)
    explanation = explain_text(loaded.model, text)
    explained = label_explanations(explanation, [float(t) for t in loaded.thresholds], labels)
    if as_json:
        body = {
            "model": info,
            "method": explanation.method,
            "unit": explanation.unit,
            "explanations": {label: e.model_dump() for label, e in explained.items()},
        }
        console.print_json(json.dumps(body, default=str))
        return
    table = Table(title=_shorten(text), show_edge=False, title_justify="left")
    for column, justify in (("label", "left"), ("score", "right"), ("flagged", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column(f"words that raised it ({explanation.unit}), offsets")
    for label, item in explained.items():
        raising = sorted(
            (s for s in item.spans if s.contribution > 0), key=lambda s: -s.contribution
        )
        words = ", ".join(
            f"{s.text!r} {s.contribution:+.3f} [{s.begin}:{s.end}]" for s in raising[:top]
        )
        table.add_row(
            label, f"{item.score:.3f}", "[bold red]yes[/]" if item.flagged else "", words or "-"
        )
    console.print(table)
    console.print(
        f"{explanation.method} explanation; model {info.get('name')} version "
        f"{info.get('version')} ({uri})"
    )


@commands.command()
def score(
    input_path: Annotated[Path, typer.Argument(help="CSV (.zip/.gz) or parquet of comments.")],
    output_path: Annotated[
        Path, typer.Argument(help="Where to write it scored (.csv or .parquet).")
    ],
    model: ModelOption = None,
    text_column: Annotated[str, typer.Option(help="Column holding the comments.")] = TEXT_COLUMN,
) -> None:
    """Score a file in chunks, keeping every input column and adding one column per label."""
    from toxiguard.monitoring.prediction_log import chunk_logger
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
    from toxiguard.serving.batch_scoring import score_file

    settings = get_settings()
    uri = resolve_model_uri(model, settings)
    loaded, info = load_toxicity_model(uri, settings)
    with (
        counting_progress("scoring", None) as on_progress,
        chunk_logger(settings, info, source="score") as log_chunk,
    ):
        rows = score_file(
            loaded,
            input_path,
            output_path,
            text_column=text_column,
            chunk_size=settings.score_chunk_size,
            on_progress=on_progress,
            on_scored=log_chunk,
        )
    console.print(f"scored {rows:,} comments with version {info.get('version')} -> {output_path}")


@commands.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8000].")] = None,
    require_keys: Annotated[
        bool,
        typer.Option(
            "--require-keys",
            help="Refuse to start without API keys (TOXIGUARD_API_KEYS); without it, serving "
            "beyond loopback without keys logs a warning.",
        ),
    ] = False,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model-dir",
            help="Serve this bundle (`toxiguard export bundle`) instead of the registry's "
            "champion: no registry, no polling [TOXIGUARD_MODEL_DIR].",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Serve the champion: REST API (/v1/predict, /docs), UI (/ui), /health, /ready, /metrics."""
    from toxiguard.serving.api import serve as serve_api

    # serve_api checks the keys before it loads anything: a refusal is one `error:` line, exit 2.
    settings = settings_with(
        host=host, port=port, require_keys=require_keys or None, model_dir=model_dir
    )
    base = f"http://{settings.host}:{settings.port}"
    # Without gradio (the 'ui' extra) the API is served alone; the server logs how to add the UI.
    ui = f", the UI at {base}/ui" if settings.ui_enabled and installed("gradio") else ""
    loading = (
        f"Loading the bundle in {settings.model_dir} (no registry)"
        if settings.model_dir is not None
        else "Loading the champion (or, with none yet, waiting for the first one)"
    )
    console.print(
        f"{loading}, then serving the API at {base}/v1/predict (docs {base}/docs){ui}, metrics "
        f"at {base}/metrics."
    )
    serve_api(settings)


def _shorten(text: str, width: int = 70) -> str:
    """Return the text on one line, cut to `width` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _print_report(report: dict[str, Any], title: str) -> None:
    """Print an evaluation report as a per-label table."""
    table = Table(title=title, show_edge=False)
    for column in ("label", "ROC-AUC", "PR-AUC", "F1 @0.5", "F1 tuned", "threshold", "positives"):
        table.add_column(column, justify="left" if column == "label" else "right")

    def fmt(value: Any) -> str:
        return (
            f"{value:.4f}" if isinstance(value, float) else "n/a" if value is None else str(value)
        )

    for label, row in report["per_label"].items():
        table.add_row(
            label,
            *(
                fmt(row.get(key))
                for key in ("roc_auc", "pr_auc", "f1", "f1_tuned", "threshold", "positives")
            ),
        )
    table.add_row(
        "[bold]mean / macro",
        fmt(report["mean_roc_auc"]),
        fmt(report["mean_pr_auc"]),
        fmt(report["f1_macro"]),
        fmt(report["f1_macro_tuned"]),
        "",
        "",
    )
    console.print(table)
    console.print(
        f"F1 micro @0.5 {fmt(report['f1_micro'])}, tuned {fmt(report['f1_micro_tuned'])}; "
        f"rows {report['n_rows']:,}"
    )
    for note in report.get("notes", []):
        console.print(f"note: {note}")
