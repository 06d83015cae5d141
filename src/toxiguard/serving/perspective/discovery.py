"""Google's API discovery document for the Perspective-compatible API, made from our models.

Google's generated clients (`googleapiclient.discovery.build`, Node's `google.discoverAPI`)
read this document to learn the methods, their paths and the message schemas. The schemas are
converted from the pydantic models' JSON Schema, so the document cannot drift from what the
server validates. Format: Google's API Discovery Service, "discovery#restDescription".
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from toxiguard import __version__
from toxiguard.serving.perspective.schemas import (
    AnalyzeCommentRequest,
    AnalyzeCommentResponse,
    SuggestCommentScoreRequest,
    SuggestCommentScoreResponse,
)

API_NAME: Final = "commentanalyzer"
API_VERSION: Final = "v1alpha1"
#: method name -> (path under the root URL, request model, response model, description)
METHODS: Final[dict[str, tuple[str, type[BaseModel], type[BaseModel], str]]] = {
    "analyze": (
        f"{API_VERSION}/comments:analyze",
        AnalyzeCommentRequest,
        AnalyzeCommentResponse,
        "Scores a comment for the requested attributes (per sentence with spanAnnotations).",
    ),
    "suggestscore": (
        f"{API_VERSION}/comments:suggestscore",
        SuggestCommentScoreRequest,
        SuggestCommentScoreResponse,
        "Stores the scores a person suggests for a comment, as feedback for monitoring.",
    ),
}
_NUMBER_FORMATS: Final = {"integer": "int32", "number": "double"}
_QUERY_PARAMETERS: Final = {
    "key": "API key (also accepted in the X-API-Key header).",
    "alt": "Data format for the response (json only).",
    "prettyPrint": "Accepted and ignored.",
    "fields": "Accepted and ignored.",
    "quotaUser": "Accepted and ignored.",
}


def _property(schema: dict[str, Any]) -> dict[str, Any]:
    """Return one JSON Schema property as a discovery-document property."""
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:  # Optional[X]
        schema = {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
    converted: dict[str, Any] = {}
    if "description" in schema:
        converted["description"] = schema["description"]
    if "$ref" in schema:
        converted["$ref"] = schema["$ref"]
        return converted
    kind = schema.get("type", "any")
    converted["type"] = kind
    if kind in _NUMBER_FORMATS:
        converted["format"] = _NUMBER_FORMATS[kind]
    if "enum" in schema:
        converted["enum"] = [str(value) for value in schema["enum"]]
    if kind == "array":
        converted["items"] = _property(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        converted["additionalProperties"] = _property(schema["additionalProperties"])
    return converted


def discovery_schemas(models: list[type[BaseModel]]) -> dict[str, dict[str, Any]]:
    """Return the models and every model they use as discovery schemas, by name."""
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template="{model}", by_alias=True
    )
    schemas = {}
    for name, schema in top.get("$defs", {}).items():
        schemas[name] = {
            "id": name,
            "type": "object",
            "description": schema.get("description", ""),
            "properties": {
                field: _property(value) for field, value in schema.get("properties", {}).items()
            },
        }
    return schemas


def discovery_document(root_url: str) -> dict[str, Any]:
    """Return the discovery document of this server's Perspective API, rooted at `root_url`."""
    root = root_url if root_url.endswith("/") else f"{root_url}/"
    methods = {
        name: {
            "id": f"{API_NAME}.comments.{name}",
            "path": path,
            "flatPath": path,
            "httpMethod": "POST",
            "description": description,
            "parameters": {},
            "parameterOrder": [],
            "request": {"$ref": request.__name__},
            "response": {"$ref": response.__name__},
        }
        for name, (path, request, response, description) in METHODS.items()
    }
    models: list[type[BaseModel]] = [m for _, req, resp, _ in METHODS.values() for m in (req, resp)]
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": f"{API_NAME}:{API_VERSION}",
        "name": API_NAME,
        "canonicalName": "Comment Analyzer",
        "version": API_VERSION,
        "revision": __version__,
        "title": "toxiguard: Perspective-compatible Comment Analyzer API",
        "description": "Self-hosted scores for Perspective's TOXICITY, SEVERE_TOXICITY, "
        "PROFANITY, THREAT, INSULT and IDENTITY_ATTACK attributes from a toxiguard model.",
        "protocol": "rest",
        "rootUrl": root,
        "servicePath": "",
        "baseUrl": root,
        "basePath": "",
        "batchPath": "batch",
        "parameters": {
            name: {"type": "string", "location": "query", "description": description}
            for name, description in _QUERY_PARAMETERS.items()
        },
        "resources": {"comments": {"methods": methods}},
        "schemas": discovery_schemas(models),
    }


__all__ = ["API_NAME", "API_VERSION", "METHODS", "discovery_document", "discovery_schemas"]
