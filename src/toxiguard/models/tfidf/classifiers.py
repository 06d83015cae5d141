"""The per-label binary classifiers of the linear families beyond scikit-learn's own (a constant,
NB-logistic regression), and each label classifier's logit as a linear function of the features.

`linear` imports both classes: models saved while they were defined there name them
`toxiguard.models.tfidf.linear.<class>` (joblib finds a class by module and name), and still load.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.special import logit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB

from toxiguard.models.base import FloatArray

#: Which features' weights to return: all of them (`ALL`) or the given columns.
Columns = slice | npt.NDArray[np.intp]
ALL: Columns = slice(None)
LogitHead = tuple[FloatArray, FloatArray]


class ConstantClassifier:
    """Stands in for a label with one class only in the training data: predicts its rate."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def predict_proba(self, features: Any) -> FloatArray:
        """Return (n, 2) probabilities of the negative and the positive class."""
        n = features.shape[0]
        return np.column_stack([np.full(n, 1 - self.rate), np.full(n, self.rate)])


class NBLogistic:
    """NB-SVM (Wang & Manning 2012): logistic regression on NB log-count-ratio scaled features."""

    def __init__(self, alpha: float, classifier: LogisticRegression) -> None:
        self.alpha = alpha
        self.classifier = classifier
        self.ratios: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    def _scale(self, features: sp.csr_matrix) -> sp.csr_matrix:
        """Return the features multiplied column-wise by the log-count ratios."""
        scaled = sp.csr_matrix(features, dtype=np.float32, copy=True)
        scaled.data *= self.ratios[scaled.indices]
        return scaled

    def fit(self, features: sp.csr_matrix, target: npt.NDArray[np.int_]) -> Self:
        """Compute the log-count ratios r, then fit on the scaled features; return self.

        r = log(f(1) / f(0)) with f(c) = (alpha + sum of the rows of class c) / (alpha + rows of
        class c): the mean feature value per class, smoothed (the Kaggle kernel's form; dividing
        by the row count, not by the L1 norm of the sums, scored 0.007 higher on validation).
        """
        positive = target == 1
        sums = (features[positive].sum(axis=0), features[~positive].sum(axis=0))
        means = [
            (np.asarray(total).ravel() + self.alpha) / (rows + self.alpha)
            for total, rows in zip(sums, (positive.sum(), (~positive).sum()), strict=True)
        ]
        ratios = np.log(means[0] / means[1])
        self.ratios = ratios.astype(np.float32)
        self.classifier.fit(self._scale(features), target)
        return self

    def predict_proba(self, features: sp.csr_matrix) -> FloatArray:
        """Return (n, 2) class probabilities."""
        proba: FloatArray = self.classifier.predict_proba(self._scale(features))
        return proba


def _logistic(estimator: Any) -> LogisticRegression | None:
    """Return the binary logistic regression of an (NB-)logistic label classifier, else None."""
    classifier = estimator.classifier if isinstance(estimator, NBLogistic) else estimator
    if isinstance(classifier, LogisticRegression) and classifier.coef_.shape[0] == 1:
        return classifier
    return None


def _sigmoid_logit(
    estimator: CalibratedClassifierCV, columns: Columns
) -> tuple[FloatArray, float] | None:
    """Return the folds' mean calibrated logit of a sigmoid-calibrated linear model, else None."""
    weights: list[FloatArray] = []
    biases: list[float] = []
    for fold in getattr(estimator, "calibrated_classifiers_", []):
        inner, calibrators = fold.estimator, fold.calibrators
        coef = getattr(inner, "coef_", None)
        slope = getattr(calibrators[0], "a_", None) if len(calibrators) == 1 else None
        if coef is None or coef.shape[0] != 1 or slope is None:
            return None  # isotonic calibration or a non-linear model: no linear logit
        # The fold's positive probability is expit(-(A * (x @ w + c) + B)).
        weights.append(-slope * np.asarray(coef[0], dtype=np.float64)[columns])
        biases.append(-(slope * float(inner.intercept_[0]) + float(calibrators[0].b_)))
    if not weights:
        return None
    return np.mean(weights, axis=0), float(np.mean(biases))


def logit_weights(
    estimator: Any, width: int, columns: Columns = ALL
) -> tuple[FloatArray, float] | None:
    """Return (w, b) such that x @ w + b is one label classifier's logit, for features x of
    `width` columns, w restricted to `columns`; None when the classifier is not linear in x.

    Exact (the logit of its positive probability) for a binary (NB-)logistic regression (NB
    ratios folded into w), a binary ComplementNB (the two classes' joint log likelihoods differ
    by x @ (log-prob[1] - log-prob[0]); scikit-learn adds no class prior for two classes) and a
    constant (w = 0, b = logit(rate): +-inf for a rate of 1 or 0). For a sigmoid-calibrated
    linear SVM (CalibratedClassifierCV, tfidf-svm) it is the mean over the calibration folds of
    the calibrated logit -(A (x @ w_f + c_f) + B_f): the model's probability is the folds' mean
    *probability*, so this is close to its logit but not equal.
    """
    if isinstance(estimator, ConstantClassifier):
        return np.zeros(width)[columns], float(logit(estimator.rate))
    classifier = _logistic(estimator)
    if classifier is not None:
        coef = np.asarray(classifier.coef_[0], dtype=np.float64)[columns]
        if isinstance(estimator, NBLogistic):
            coef = coef * estimator.ratios[columns].astype(np.float64)
        return coef, float(classifier.intercept_[0])
    if isinstance(estimator, ComplementNB) and len(estimator.classes_) == 2:
        log_prob = estimator.feature_log_prob_
        return np.asarray(log_prob[1][columns] - log_prob[0][columns], dtype=np.float64), 0.0
    if isinstance(estimator, CalibratedClassifierCV) and estimator.method == "sigmoid":
        return _sigmoid_logit(estimator, columns)
    return None


def stack_logits(estimators: Sequence[Any], width: int, columns: Columns = ALL) -> LogitHead | None:
    """Return (weights (columns, labels), biases): X[:, columns] @ weights + biases is every
    label's `logit_weights` logit; None when one label's classifier is not linear."""
    weights: list[FloatArray] = []
    biases: list[float] = []
    for estimator in estimators:
        part = logit_weights(estimator, width, columns)
        if part is None:
            return None
        weights.append(part[0])
        biases.append(part[1])
    return np.column_stack(weights), np.asarray(biases, dtype=np.float64)


def stacked_logistic_head(estimators: Sequence[Any]) -> LogitHead | None:
    """Return (weights (d, labels), biases) such that sigmoid(X @ weights + biases) gives every
    label's positive probability, when each label is a binary (NB-)logistic regression or a
    constant; None otherwise (e.g. calibrated SVMs, naive Bayes).

    One sparse-dense product then scores all labels: for a single comment, the per-label
    `predict_proba` calls spend most of their time in scikit-learn's input checks.
    """
    logistic = [_logistic(estimator) for estimator in estimators]
    if any(
        lr is None and not isinstance(estimator, ConstantClassifier)
        for lr, estimator in zip(logistic, estimators, strict=True)
    ):
        return None
    widths = [lr.coef_.shape[1] for lr in logistic if lr is not None]
    if not widths:  # constants only: nothing to stack
        return None
    return stack_logits(estimators, widths[0])
