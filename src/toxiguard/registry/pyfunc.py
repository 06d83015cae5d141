"""The MLflow pyfunc wrapper around a saved model package, its signature and input example."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc.model import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema

from toxiguard.errors import ToxiguardError
from toxiguard.labels import LABELS, TEXT_COLUMN
from toxiguard.models.package import ModelPackage
from toxiguard.settings import get_settings

INPUT_COLUMN = "text"
#: The name of the logged MLflow model inside its run.
MODEL_NAME = "model"
#: The pyfunc artifact holding the saved package (`models:/<name>/<version>/artifacts/model`).
ARTIFACT_NAME = "model"


# One unnamed string column: MLflow then accepts a list of str, a series, a one-column frame of
# any name or {"text": [...]}; with a named column it would reject plain lists.
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string")]),
    outputs=Schema([ColSpec("double", label) for label in LABELS]),
)


# Harmless examples: the input example is stored with the model and shown in the MLflow UI.
INPUT_EXAMPLE = pd.DataFrame(
    {INPUT_COLUMN: ["Thanks for fixing the citation.", "You are an idiot and should shut up."]}
)


class ToxiguardPyfunc(PythonModel):
    """MLflow pyfunc wrapper around the model package saved in the artifact "model"."""

    package: ModelPackage

    def load_context(self, context: PythonModelContext) -> None:
        """Load the saved model package from the model's artifacts, verified by its manifest."""
        # MLflow calls this with no toxiguard settings in hand: the environment's are read here.
        self.package = ModelPackage.load(
            context.artifacts[ARTIFACT_NAME],
            allow_unverified=get_settings().allow_unverified_models,
        )

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Return a frame of float64 probabilities, one column per label, for the given comments."""
        texts = input_texts(model_input)
        probabilities = np.asarray(self.package.predict_proba(texts), dtype=np.float64)
        return pd.DataFrame(probabilities, columns=list(self.package.labels))


def input_texts(model_input: object) -> list[str]:
    """Return the comments in a pyfunc input: a frame ("text" or one column), series or strs."""
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN in model_input.columns:
            column = model_input[INPUT_COLUMN]
        elif TEXT_COLUMN in model_input.columns:
            column = model_input[TEXT_COLUMN]
        elif model_input.shape[1] == 1:
            column = model_input.iloc[:, 0]
        else:
            raise ToxiguardError(
                f"expected a column '{INPUT_COLUMN}' in the model input, "
                f"got {list(model_input.columns)}"
            )
        values: Sequence[object] = column.tolist()
        if any(isinstance(value, list | tuple | np.ndarray) for value in values):
            # MLflow turns {"text": [...]} into one row holding the whole list.
            values = [item for value in values for item in _as_list(value)]
    elif isinstance(model_input, pd.Series | np.ndarray):
        values = list(np.asarray(model_input, dtype=object).ravel())
    elif isinstance(model_input, str):
        values = [model_input]
    elif isinstance(model_input, Sequence):
        values = model_input
    else:
        raise ToxiguardError(f"cannot read comments from a {type(model_input).__name__}")
    return ["" if _missing(value) else str(value) for value in values]


def _as_list(value: object) -> list[object]:
    """Return a list-like cell as a list, any other cell as a one-item list."""
    return list(value) if isinstance(value, list | tuple | np.ndarray) else [value]


def _missing(value: object) -> bool:
    """Return True for None, pandas' NA and float NaN."""
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
