"""Per-token explanations of a model's scores: which words of a raw comment made each label's score.

Two methods, chosen by the model:
- "linear-exact", for the TF-IDF families (`LinearTextModel`: tfidf-lr, nbsvm, tfidf-svm,
  complement-nb): each label's logit is b + sum_j x_j w_j over the text's features
  (`LinearTextModel.logit_terms`); each feature's term x_j w_j is spread over the characters of
  its occurrences and mapped back to the raw text's tokens (`features.spans`), so the baseline
  b plus the tokens' contributions is the logit, exactly. Unit: logit.
- "occlusion", for every other model (transformer, blend, ...): each unit (a token, or a group
  of adjacent tokens when there are more than `max_units`) is removed in turn, and its
  contribution is p(text) - p(text without it). Unit: probability.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from toxiguard.errors import ToxiguardError
from toxiguard.features.spans import Token, feature_spans, tokenize
from toxiguard.labels import LABELS
from toxiguard.models.base import FloatArray, ToxicityModel
from toxiguard.models.tfidf.linear import LinearTextModel

logger = logging.getLogger(__name__)

METHODS: Final = ("auto", "linear-exact", "occlusion")
MAX_UNITS: Final = 48
_NON_SPACE: Final = re.compile(r"\S+")


@dataclass(frozen=True, eq=False)
class Explanation:
    """Each token's contribution to each label's score for one raw text."""

    text: str  # the raw text explained
    method: str  # "linear-exact" or "occlusion"
    unit: str  # "logit" (linear-exact) or "probability" (occlusion)
    probabilities: FloatArray  # (6,): the model's predict_proba for the text, label order
    tokens: tuple[Token, ...]  # the units contributions are given for, in text order
    contributions: FloatArray  # (len(tokens), 6): each token's contribution to each label
    # (6,) linear-exact: the intercept logit, baseline + contributions.sum(0) == the logit;
    # occlusion: the probability with every token removed.
    baseline: FloatArray

    def top_tokens(self, label: str, k: int = 5) -> list[tuple[Token, float]]:
        """Return up to k (token, contribution) pairs with positive contributions to `label`,
        highest first (ties in text order)."""
        if label not in LABELS:
            raise ToxiguardError(f"unknown label '{label}' (known: {', '.join(LABELS)})")
        values = self.contributions[:, LABELS.index(label)]
        order = np.argsort(-values, kind="stable")[:k]
        return [(self.tokens[i], float(values[i])) for i in order if values[i] > 0]


def explain(
    model: ToxicityModel, text: str, *, max_units: int = MAX_UNITS, method: str = "auto"
) -> Explanation:
    """Return the per-token contributions of one raw text for every label."""
    return explain_texts(model, [text], max_units=max_units, method=method)[0]


def explain_texts(
    model: ToxicityModel,
    texts: Sequence[str],
    *,
    max_units: int = MAX_UNITS,
    method: str = "auto",
) -> list[Explanation]:
    """Return the explanation of every raw text (featurized, or scored, in one batch).

    `method` "auto" takes linear-exact where the model has a linear logit and occlusion
    elsewhere; "occlusion" forces occlusion on any model. `max_units` bounds occlusion's units.
    """
    if method not in METHODS:
        raise ToxiguardError(f"unknown explanation method '{method}' (known: {', '.join(METHODS)})")
    if max_units < 1:
        raise ToxiguardError(f"max_units must be at least 1, got {max_units}")
    if method != "occlusion" and isinstance(model, LinearTextModel) and _has_logit(model):
        return linear_exact(model, texts)
    if method == "linear-exact":
        raise ToxiguardError(f"{model.family}: no linear logit to explain exactly")
    return occlusion(model, texts, max_units=max_units)


def _has_logit(model: LinearTextModel) -> bool:
    """Return whether every label's logit is linear in the model's features."""
    return model.logit_terms(np.zeros(0, dtype=np.intp)) is not None


def linear_exact(model: LinearTextModel, texts: Sequence[str]) -> list[Explanation]:
    """Return the exact logit decomposition of each text over its tokens (module docstring).

    For tfidf-svm the decomposed quantity is the calibration folds' mean calibrated logit, while
    the model's probability is the folds' mean probability: close, not equal (measured on 400
    comments of benchmarks/explain.py: 0.09 to 0.11 logit apart at the median, 0.67 at most).
    A feature whose occurrences cannot be found in the text (none is known to exist) is spread
    evenly over the tokens, so that the sum stays exact, and logged.
    """
    featurizer = model.fitted_featurizer()
    if len(texts) == 0:
        return []
    features = featurizer.transform(texts)
    probabilities = model.proba_of_features(features)
    explanations = []
    for i, text in enumerate(texts):
        row = features[i]
        terms = model.logit_terms(row.indices)
        if terms is None:
            raise ToxiguardError(f"{model.family}: no linear logit to explain exactly")
        weights, biases = terms
        feature_logits = row.data.astype(np.float64)[:, None] * weights
        spans = feature_spans(featurizer, text)
        where = np.searchsorted(spans.columns, row.indices)
        found = where < len(spans.columns)
        found[found] = spans.columns[where[found]] == row.indices[found]
        located = np.zeros((len(spans.columns), len(LABELS)))
        located[where[found]] = feature_logits[found]
        contributions = np.asarray(spans.weights.T @ located).reshape(-1, len(LABELS))
        if not found.all() and spans.tokens:
            logger.warning(
                "%s: %d feature(s) not located in the text; spread over its tokens",
                model.family,
                int((~found).sum()),
            )
            contributions += feature_logits[~found].sum(axis=0) / len(spans.tokens)
        explanations.append(
            Explanation(
                text=text,
                method="linear-exact",
                unit="logit",
                probabilities=probabilities[i].copy(),
                tokens=spans.tokens,
                contributions=contributions,
                baseline=biases.copy(),
            )
        )
    return explanations


def occlusion_units(text: str, max_units: int = MAX_UNITS) -> tuple[Token, ...]:
    """Return the text's tokens, or at most `max_units` groups of adjacent tokens (as even in
    size as can be) when there are more; a group's span runs from its first token to its last."""
    tokens = tokenize(text)
    if len(tokens) <= max_units:
        return tokens
    groups = np.array_split(np.arange(len(tokens)), max_units)
    spans = [(tokens[group[0]].begin, tokens[group[-1]].end) for group in groups]
    return tuple(Token(begin, end, text[begin:end]) for begin, end in spans)


def occlusion(
    model: ToxicityModel, texts: Sequence[str], *, max_units: int = MAX_UNITS
) -> list[Explanation]:
    """Return each text's occlusion explanation: p(text) - p(text without the unit), per label.

    Latency: every text, every text with one unit removed and every text with all of them
    removed are scored in one `predict_proba` call, identical variants once: at most
    2 + max_units texts (forward passes) per comment, against 1 for scoring it. Measured
    (benchmarks/explain.py, 2 shared cores, about 48 units a comment): the int8 transformer
    540 ms against 18 ms for scoring the comment (30x), tfidf-lr 14 ms against 5 ms.
    """
    variants: dict[str, int] = {}
    plans = []
    for text in texts:
        units = occlusion_units(text, max_units)
        without = [
            variants.setdefault(text[: u.begin] + text[u.end :], len(variants)) for u in units
        ]
        full = variants.setdefault(text, len(variants))
        empty = variants.setdefault(_NON_SPACE.sub("", text), len(variants))
        plans.append((text, units, full, without, empty))
    scores = model.predict_proba(list(variants)) if variants else np.zeros((0, len(LABELS)))
    scores = np.asarray(scores, dtype=np.float64)
    return [
        Explanation(
            text=text,
            method="occlusion",
            unit="probability",
            probabilities=scores[full].copy(),
            tokens=units,
            contributions=(scores[full] - scores[without]).reshape(len(units), len(LABELS)),
            baseline=scores[empty].copy(),
        )
        for text, units, full, without, empty in plans
    ]


__all__ = [
    "MAX_UNITS",
    "METHODS",
    "Explanation",
    "Token",
    "explain",
    "explain_texts",
    "linear_exact",
    "occlusion",
    "occlusion_units",
]
