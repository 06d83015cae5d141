"""The model families by name: build one (`create_model`), or load whichever family was saved.

Importing this needs neither PyTorch nor transformers: the transformer family imports them
only to fine-tune (and to serve from PyTorch when asked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toxiguard.errors import ModelNotFoundError, ToxiguardError
from toxiguard.models.base import META_FILE, ToxicityModel
from toxiguard.models.blend import DEFAULT_MEMBERS, BlendModel
from toxiguard.models.cascade import STAGES, CascadeModel
from toxiguard.models.tfidf.linear import (
    ComplementNBModel,
    NBSVMModel,
    TfidfLogisticModel,
    TfidfSVMModel,
)
from toxiguard.models.transformer.model import TransformerModel

FAMILIES: dict[str, type[ToxicityModel]] = {
    cls.family: cls
    for cls in (
        BlendModel,
        CascadeModel,
        TfidfLogisticModel,
        NBSVMModel,
        TfidfSVMModel,
        ComplementNBModel,
        TransformerModel,
    )
}


def model_families() -> list[str]:
    """Return the names of every model family."""
    return sorted(FAMILIES)


def model_class(family: str) -> type[ToxicityModel]:
    """Return the class of a model family, or raise ModelNotFoundError naming the known ones."""
    if family not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise ModelNotFoundError(f"unknown model family '{family}' (known: {known})")
    return FAMILIES[family]


def _blend_params(params: Mapping[str, Any], common: Mapping[str, Any]) -> dict[str, Any]:
    """Return a blend's constructor arguments with its member estimators built.

    Members come as `members` (family names, default `DEFAULT_MEMBERS`) with optional
    `member_params` (a configuration, and what models saved before `estimators` existed hold),
    or as `estimators`: pairs of a name and a model, or of a name and a saved spec
    {"family", "params"}.
    """
    params = dict(params)
    members = params.pop("members", None)
    member_params: Mapping[str, Mapping[str, Any]] = params.pop("member_params", None) or {}
    if members is not None and "estimators" in params:
        raise ToxiguardError("blend: give either members or estimators, not both")
    if members is not None:
        params["estimators"] = [
            (name, create_model(name, common, **member_params.get(name, {}))) for name in members
        ]
    elif "estimators" in params:
        params["estimators"] = [
            (str(name), _member(member, common)) for name, member in params["estimators"]
        ]
    else:
        params["estimators"] = [
            (name, create_model(name, common, **member_params.get(name, {})))
            for name in DEFAULT_MEMBERS
        ]
    return params


#: A cascade's stages given none: NB-SVM (the best TF-IDF family measured) and the blend.
DEFAULT_STAGES: dict[str, str] = {"fast": "nbsvm", "slow": "blend"}


def _cascade_params(params: Mapping[str, Any], common: Mapping[str, Any]) -> dict[str, Any]:
    """Return a cascade's constructor arguments with its stages built: each stage a model, a
    family name (with `stage_params[stage]`) or a saved spec {family, params}."""
    params = dict(params)
    stage_params: Mapping[str, Mapping[str, Any]] = params.pop("stage_params", None) or {}
    for stage in STAGES:
        given = params.get(stage) or DEFAULT_STAGES[stage]
        if isinstance(given, str):
            given = {"family": given, "params": stage_params.get(stage, {})}
        params[stage] = _member(given, common, "cascade")
    return params


def _member(member: Any, common: Mapping[str, Any], owner: str = "blend") -> ToxicityModel:
    """Return a member of a composite model: a model as it is, or one built from a saved spec."""
    if isinstance(member, ToxicityModel):
        return member
    if isinstance(member, Mapping) and "family" in member:
        return create_model(str(member["family"]), common, **member.get("params", {}))
    raise ToxiguardError(f"{owner}: a member must be a model or {{family, params}}, got {member!r}")


def create_model(
    family: str, common: Mapping[str, Any] | None = None, /, **params: Any
) -> ToxicityModel:
    """Return a new, unfitted model of the given family, its params checked.

    `common` holds values for params that several families take (seed, thread counts): each is
    used where the family has such a param and `params` does not set it (a blend passes them on
    to the members it builds). Unknown param names and bad values raise ToxiguardError.
    """
    cls = model_class(family)
    shared = dict(common or {})
    if cls is BlendModel:
        params = _blend_params(params, shared)
    elif cls is CascadeModel:
        params = _cascade_params(params, shared)
    known = set(cls._get_param_names())
    unknown = sorted(set(params) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ToxiguardError(f"{family}: unknown parameter(s) {unknown} (known: {names})")
    defaults = {key: value for key, value in shared.items() if key in known and key not in params}
    return cls(**defaults, **params).check_params()


def load_model(directory: str | Path) -> ToxicityModel:
    """Return the model saved in `directory`, whichever family it is.

    It reads the files as they are: a registered or served model is loaded through
    `ModelPackage.load`, which verifies them against their manifest first.
    """
    path = Path(directory)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise ModelNotFoundError(f"{path}: no saved toxiguard model ({META_FILE} missing)")
    meta = json.loads(meta_path.read_text())
    model = create_model(meta["family"], **meta["params"])
    model.load_state(path)
    return model


__all__ = ["ToxicityModel", "create_model", "load_model", "model_class", "model_families"]
