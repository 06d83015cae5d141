"""`toxiguard export`: a registered model as a Hugging Face Space, or as a bundle that `toxiguard
serve --model-dir` serves without a registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toxiguard.cli.common import console, require_installed
from toxiguard.cli.inference import ModelOption
from toxiguard.settings import get_settings

export_app = typer.Typer(
    help="Export a registered model: a Hugging Face Space, or a bundle served without a registry."
)

DirectoryArgument = Annotated[
    Path, typer.Argument(help="A new (or empty) directory to write it into.", file_okay=False)
]


@export_app.command("space")
def space(directory: DirectoryArgument, model: ModelOption = None) -> None:
    """Write a self-contained Gradio app (app.py, pinned requirements.txt, README.md with the
    Space's front matter and model card, the model) in the layout Hugging Face Spaces expect."""
    require_installed("toxiguard export space", "ui", "gradio")
    from toxiguard.serving.export import export_source, write_space

    source = export_source(get_settings(), model)
    path = write_space(source, directory)
    console.print(
        f"Space for {source.info.get('name')} version {source.info.get('version')} written to "
        f"{path}: run it with `pip install -r requirements.txt && python app.py` there."
    )


@export_app.command("bundle")
def bundle(directory: DirectoryArgument, model: ModelOption = None) -> None:
    """Write the model as a plain directory (the verified package and bundle.json), served by
    `toxiguard serve --model-dir DIR` without a registry."""
    from toxiguard.serving.export import export_source, write_bundle

    source = export_source(get_settings(), model)
    path = write_bundle(source, directory)
    console.print(
        f"Bundle of {source.info.get('name')} version {source.info.get('version')} written to "
        f"{path}: serve it with `toxiguard serve --model-dir {path}`."
    )
