"""Model families behind one interface; `create_model(name)` builds one by its family name."""

from __future__ import annotations

from typing import Any

from toxiguard.errors import ModelNotFoundError
from toxiguard.models.base import ToxicityModel


def _families() -> dict[str, type[ToxicityModel]]:
    # Imported lazily so that importing toxiguard.models does not pull in every framework.
    from toxiguard.models.blend import BlendModel
    from toxiguard.models.tfidf.linear import (
        ComplementNBModel,
        NBSVMModel,
        TfidfLogisticModel,
        TfidfSVMModel,
    )
    from toxiguard.models.transformer.model import TransformerModel

    families: list[type[ToxicityModel]] = [
        BlendModel,
        TfidfLogisticModel,
        NBSVMModel,
        TfidfSVMModel,
        ComplementNBModel,
        TransformerModel,
    ]
    return {cls.family: cls for cls in families}


def model_families() -> list[str]:
    """Return the names of every model family."""
    return sorted(_families())


def model_class(family: str) -> type[ToxicityModel]:
    """Return the class of a model family, or raise ModelNotFoundError naming the known ones."""
    families = _families()
    if family not in families:
        known = ", ".join(sorted(families))
        raise ModelNotFoundError(f"unknown model family '{family}' (known: {known})")
    return families[family]


def create_model(family: str, **params: Any) -> ToxicityModel:
    """Return a new, unfitted model of the given family."""
    return model_class(family)(**params)


__all__ = ["ToxicityModel", "create_model", "model_class", "model_families"]
