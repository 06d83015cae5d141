"""The linear model families on shared TF-IDF features: logistic regression, NB-SVM, calibrated
linear SVM and ComplementNB, one binary classifier per label.

Every family cleans the raw text itself (`features.text`, inside the featurizer), so a saved
model takes raw comments. Labels are fitted `n_jobs` at a time, in threads where the solver
releases the GIL (the large feature matrix is then shared, not copied).
"""

from __future__ import annotations

import copy
import logging
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Self

import joblib  # type: ignore[import-untyped]
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from joblib import Parallel, delayed
from scipy.special import expit, logit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from toxiguard.errors import ModelNotFoundError, ToxiguardError
from toxiguard.features.tfidf import FEATURE_DEFAULTS, TfidfFeaturizer
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel

logger = logging.getLogger(__name__)

STATE_FILE: Final = "linear.joblib"
COMMON_DEFAULTS: Final[dict[str, Any]] = {"seed": 42, "n_jobs": 2}
CLASS_WEIGHTS: Final = (None, "balanced")
SOLVERS: Final = ("lbfgs", "liblinear")


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


def stacked_logistic_head(estimators: Sequence[Any]) -> tuple[FloatArray, FloatArray] | None:
    """Return (weights (d, labels), biases) such that sigmoid(X @ weights + biases) gives every
    label's positive probability, when each label is a binary (NB-)logistic regression or a
    constant; None otherwise (e.g. calibrated SVMs, naive Bayes).

    One sparse-dense product then scores all labels: for a single comment, the per-label
    `predict_proba` calls spend most of their time in scikit-learn's input checks.
    """
    weights: list[FloatArray] = []
    biases: list[float] = []
    for estimator in estimators:
        classifier = estimator.classifier if isinstance(estimator, NBLogistic) else estimator
        if isinstance(classifier, LogisticRegression) and classifier.coef_.shape[0] == 1:
            coef = classifier.coef_[0].astype(np.float64)
            if isinstance(estimator, NBLogistic):
                coef = coef * estimator.ratios.astype(np.float64)
            weights.append(coef)
            biases.append(float(classifier.intercept_[0]))
        elif isinstance(estimator, ConstantClassifier):
            weights.append(np.zeros(0))  # filled in below, once the width is known
            biases.append(float(logit(estimator.rate)))  # +-inf for a rate of 1 or 0
        else:
            return None
    width = max((len(w) for w in weights), default=0)
    if width == 0:  # constants only: nothing to stack
        return None
    matrix = np.column_stack([w if len(w) else np.zeros(width) for w in weights])
    return matrix, np.asarray(biases, dtype=np.float64)


class LinearTextModel(ToxicityModel):
    """TF-IDF features (shared code, `TfidfFeaturizer`) and one linear classifier per label.

    Params (keyword only, JSON-safe): the featurizer's (`FEATURE_DEFAULTS`), `seed`, `n_jobs`
    and the family's own (`defaults`). Unknown names are an error.
    """

    defaults: ClassVar[dict[str, Any]] = {}
    # How labels are fitted in parallel: threads share the feature matrix (the solvers release
    # the GIL); TfidfSVMModel explains why it uses processes.
    label_backend: ClassVar[str] = "threading"

    def __init__(self, **params: Any) -> None:
        allowed = {**FEATURE_DEFAULTS, **COMMON_DEFAULTS, **self.defaults}
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            known = ", ".join(sorted(allowed))
            raise ToxiguardError(f"{self.family}: unknown parameter(s) {unknown} (known: {known})")
        super().__init__(**copy.deepcopy({**allowed, **params}))
        if "class_weight" in self.defaults:
            for label in self.labels:
                if self.label_param("class_weight", label) not in CLASS_WEIGHTS:
                    raise ToxiguardError(
                        f"{self.family}: class_weight must be one of {CLASS_WEIGHTS} "
                        f"(or a mapping label -> one of them), got {self.params['class_weight']!r}"
                    )
        if "solver" in self.defaults and self.params["solver"] not in SOLVERS:
            raise ToxiguardError(
                f"{self.family}: solver must be one of {SOLVERS}, got {self.params['solver']!r}"
            )
        TfidfFeaturizer(self.params)  # raises ToxiguardError for bad feature params
        self.featurizer: TfidfFeaturizer | None = None
        self.estimators: list[Any] = []
        # All labels as one product, where the estimators allow it (`stacked_logistic_head`).
        self.head: tuple[FloatArray, FloatArray] | None = None

    def label_param(self, name: str, label: str) -> Any:
        """Return a param that may be one value or a mapping label -> value, for one label."""
        value = self.params[name]
        return value.get(label, self.defaults[name]) if isinstance(value, Mapping) else value

    @abstractmethod
    def make_estimator(self, label: str) -> Any:
        """Return a new, unfitted binary classifier for one label."""

    def fit(
        self,
        texts: Sequence[str],
        labels: LabelArray,
        *,
        validation: tuple[Sequence[str], LabelArray] | None = None,
    ) -> Self:
        """Fit the featurizer and one classifier per label; return self."""
        target = np.asarray(labels)
        if target.ndim != 2 or target.shape != (len(texts), len(self.labels)):
            raise ToxiguardError(
                f"{self.family}: expected labels of shape ({len(texts)}, {len(self.labels)}), "
                f"got {target.shape}"
            )
        n_jobs = int(self.params["n_jobs"])
        featurizer = TfidfFeaturizer(self.params, n_jobs=n_jobs)
        logger.info("%s: featurizing %d texts", self.family, len(texts))
        features = featurizer.fit_transform(texts)
        self.estimators = Parallel(n_jobs=n_jobs, backend=self.label_backend)(
            delayed(self._fit_label)(features, target[:, j], j) for j in range(len(self.labels))
        )
        self.featurizer = featurizer
        self.head = stacked_logistic_head(self.estimators)
        if validation is not None:
            self._log_validation(validation)
        return self

    def _fit_label(self, features: sp.csr_matrix, target: npt.NDArray[Any], j: int) -> Any:
        """Return the fitted classifier of label j (a constant one if it has a single class)."""
        label = self.labels[j]
        logger.info("%s: fitting label %d/%d: %s", self.family, j + 1, len(self.labels), label)
        target = target.astype(np.int_)
        if target.min() == target.max():
            logger.warning(
                "%s: label %s has one class only; predicting its rate", self.family, label
            )
            return ConstantClassifier(float(target[0]))
        return self.make_estimator(label).fit(features, target)

    def _log_validation(self, validation: tuple[Sequence[str], LabelArray]) -> None:
        """Log the per-label ROC-AUC on the validation rows."""
        truth = np.asarray(validation[1])
        proba = self.predict_proba(validation[0])
        for j, label in enumerate(self.labels):
            if 0 < truth[:, j].sum() < len(truth):
                auc = roc_auc_score(truth[:, j], proba[:, j])
                logger.info("%s: validation ROC-AUC %s %.4f", self.family, label, auc)

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return an (n, 6) float64 array of probabilities in label order."""
        if self.featurizer is None:
            raise ToxiguardError(f"{self.family}: the model is not fitted")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        features = self.featurizer.transform(texts)
        if self.head is not None:
            weights, biases = self.head
            return np.asarray(expit(features @ weights + biases), dtype=np.float64)
        columns = [estimator.predict_proba(features)[:, 1] for estimator in self.estimators]
        return np.clip(np.column_stack(columns).astype(np.float64), 0.0, 1.0)

    def save_state(self, directory: Path) -> None:
        """Write the featurizer and the per-label classifiers into one joblib file."""
        if self.featurizer is None:
            raise ToxiguardError(f"{self.family}: cannot save a model that is not fitted")
        state = {"featurizer": self.featurizer, "estimators": self.estimators}
        joblib.dump(state, directory / STATE_FILE, compress=3)

    def load_state(self, directory: Path) -> None:
        """Read the state written by `save_state`."""
        path = directory / STATE_FILE
        if not path.is_file():
            raise ModelNotFoundError(f"{directory}: no {self.family} state ({STATE_FILE} missing)")
        state = joblib.load(path)
        self.featurizer = state["featurizer"]
        self.estimators = list(state["estimators"])
        self.head = stacked_logistic_head(self.estimators)


# Measured on the shared data (benchmarks/README.md): lbfgs reaches liblinear's validation ROC-AUC
# in under half its CPU time on these features (tfidf-lr 22 s against 40 s, nbsvm 20 s against
# 52 s for six labels), and converges in under 100 iterations.
LOGISTIC_DEFAULTS: Final[dict[str, Any]] = {
    "C": 1.0,
    "class_weight": "balanced",
    "solver": "lbfgs",
    "tol": 1e-4,
    "max_iter": 200,
}


def logistic_regression(model: LinearTextModel, label: str) -> LogisticRegression:
    """Return the logistic regression of one label, as the model's params describe it."""
    return LogisticRegression(
        C=float(model.label_param("C", label)),
        class_weight=model.label_param("class_weight", label),
        solver=str(model.params["solver"]),
        tol=float(model.params["tol"]),
        max_iter=int(model.params["max_iter"]),
        random_state=int(model.params["seed"]),
    )


class TfidfLogisticModel(LinearTextModel):
    """Word + char n-gram TF-IDF and one logistic regression per label."""

    family = "tfidf-lr"
    defaults: ClassVar[dict[str, Any]] = dict(LOGISTIC_DEFAULTS)

    def make_estimator(self, label: str) -> LogisticRegression:
        """Return this label's logistic regression."""
        return logistic_regression(self, label)


class NBSVMModel(LinearTextModel):
    """NB-SVM: naive-Bayes log-count ratios per label, then logistic regression on the scaled
    TF-IDF features (Wang & Manning 2012, as in the well-known Kaggle kernel)."""

    family = "nbsvm"
    defaults: ClassVar[dict[str, Any]] = {**LOGISTIC_DEFAULTS, "C": 0.5, "alpha": 1.0}

    def make_estimator(self, label: str) -> NBLogistic:
        """Return this label's logistic regression on NB-scaled features."""
        return NBLogistic(float(self.params["alpha"]), logistic_regression(self, label))


class TfidfSVMModel(LinearTextModel):
    """TF-IDF and one linear SVM per label, probabilities calibrated by cross-validation.

    The dual solver is about four times faster here than the primal one, but it draws from
    liblinear's one process-wide random generator, so two labels fitted in threads at the same
    time would make the fit irreproducible: labels are fitted in worker processes instead (the
    feature matrix goes to them once, memory-mapped).
    """

    family = "tfidf-svm"
    label_backend = "loky"
    defaults: ClassVar[dict[str, Any]] = {
        "C": 0.1,
        "class_weight": None,
        "calibration": "sigmoid",
        "calibration_folds": 3,
    }

    def make_estimator(self, label: str) -> CalibratedClassifierCV:
        """Return a LinearSVC wrapped in CalibratedClassifierCV with this label's C."""
        svm = LinearSVC(
            C=float(self.label_param("C", label)),
            class_weight=self.label_param("class_weight", label),
            random_state=int(self.params["seed"]),
        )
        return CalibratedClassifierCV(
            svm, method=str(self.params["calibration"]), cv=int(self.params["calibration_folds"])
        )


class ComplementNBModel(LinearTextModel):
    """Complement naive Bayes per label on the TF-IDF features (the cheap baseline)."""

    family = "complement-nb"
    defaults: ClassVar[dict[str, Any]] = {"alpha": 0.01}

    def make_estimator(self, label: str) -> ComplementNB:
        """Return a ComplementNB with the configured smoothing."""
        return ComplementNB(alpha=float(self.label_param("alpha", label)))
