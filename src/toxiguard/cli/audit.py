"""`toxiguard audit`: a registered model's identity-term bias and obfuscation robustness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from toxiguard.cli.common import console
from toxiguard.cli.inference import ModelOption
from toxiguard.errors import ToxiguardError
from toxiguard.labels import TEXT_COLUMN
from toxiguard.settings import get_settings

if TYPE_CHECKING:
    from toxiguard.training.audit import AuditReport

commands = typer.Typer()


@commands.command()
def audit(
    model: ModelOption = None,
    data_path: Annotated[
        Path | None,
        typer.Option(
            "--data",
            "-d",
            help="Labelled file to audit on. Default: the audit saved with the model, made on "
            "its test split when it was trained.",
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Print a model's bias report (subgroup, BPSN and BNSP AUC; final bias score; neutral
    sentences) and robustness report (ROC-AUC under each obfuscation)."""
    from toxiguard.data.validation import label_matrix, load_dataset
    from toxiguard.registry.client import load_toxicity_model, resolve_model_uri
    from toxiguard.training.audit import AuditReport, audit_model

    settings = get_settings()
    uri = resolve_model_uri(model, settings)
    package, info = load_toxicity_model(uri, settings)
    if data_path is not None:
        dataset = load_dataset(data_path)
        report = audit_model(
            package.predict_proba,
            dataset.frame[TEXT_COLUMN].astype(str).tolist(),
            label_matrix(dataset.frame),
            package.thresholds,
            seed=settings.seed,
            robustness_rows=settings.audit_robustness_rows,
        )
        source = dataset.source
    elif package.audit is not None:
        report, source = AuditReport.from_dict(package.audit), "its test split, when trained"
    else:
        raise ToxiguardError(
            f"{uri}: this version was registered without an audit (trained before audits "
            "existed); pass --data FILE (a labelled CSV) to audit it on that file"
        )
    print_audit(report, f"model {info.get('name')} version {info.get('version')} on {source}")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        data = {"model": {"uri": uri, "version": info.get("version")}, **report.to_dict()}
        json_out.write_text(json.dumps(data, indent=2, default=str))
        console.print(f"report written to {json_out}")


def _table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Return a rich table of rows (dicts with the same keys), numbers right-aligned."""
    table = Table(title=title, show_edge=False, title_justify="left")
    for key in rows[0] if rows else ():
        table.add_column(key.replace("_", " "), justify="left" if key in ("subgroup",) else "right")
    for row in rows:
        table.add_row(*("n/a" if value is None else str(value) for value in row.values()))
    return table


def print_audit(report: AuditReport, title: str) -> None:
    """Print the audit's headline figures and its four tables."""
    from toxiguard.training.audit import TABLE_CAPTIONS, audit_summary, audit_tables

    console.print(f"[bold]Audit of {title}")
    for line in audit_summary(report):
        console.print(f"  {line}")
    for name, rows in audit_tables(report).items():
        console.print(_table(TABLE_CAPTIONS[name], rows))
