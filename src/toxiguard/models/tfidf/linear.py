"""The linear model families on shared TF-IDF features: logistic regression, NB-SVM, calibrated
linear SVM and ComplementNB, one binary classifier per label.

Every family cleans the raw text itself (`features.text`, inside the featurizer), so a saved
model takes raw comments. Labels are fitted `n_jobs` at a time, in threads where the solver
releases the GIL (the large feature matrix is then shared, not copied).
"""

from __future__ import annotations

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
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from toxiguard.errors import ModelIntegrityError, ModelNotFoundError, ToxiguardError, error_line
from toxiguard.features.tfidf import FEATURE_DEFAULTS, TfidfFeaturizer
from toxiguard.models.base import FloatArray, LabelArray, ToxicityModel
from toxiguard.models.metrics import label_roc_aucs
from toxiguard.models.tfidf.classifiers import (
    Columns,
    ConstantClassifier,
    LogitHead,
    NBLogistic,
    stack_logits,
    stacked_logistic_head,
)

logger = logging.getLogger(__name__)

STATE_FILE: Final = "linear.joblib"
CLASS_WEIGHTS: Final = (None, "balanced")
SOLVERS: Final = ("lbfgs", "liblinear")


class LinearTextModel(ToxicityModel):
    """TF-IDF features (shared code, `TfidfFeaturizer`) and one linear classifier per label.

    Every family takes the featurizer's arguments (`FEATURE_DEFAULTS`: cleaning, word and char
    n-gram ranges, minimum document frequencies, vocabulary sizes, sublinear tf), `seed` and
    `n_jobs` (labels fitted at a time), then its own. Params that may differ per label (C,
    class_weight, alpha) take one value or a mapping label -> value (`label_param`).
    """

    # How labels are fitted in parallel: threads share the feature matrix (the solvers release
    # the GIL); TfidfSVMModel explains why it uses processes.
    label_backend: ClassVar[str] = "threading"
    # The family's own defaults of per-label params, for labels a mapping leaves out.
    label_defaults: ClassVar[dict[str, Any]] = {}

    def feature_params(self) -> dict[str, Any]:
        """Return the featurizer's arguments (the keys of FEATURE_DEFAULTS) of this model."""
        return {key: getattr(self, key) for key in FEATURE_DEFAULTS}

    def label_param(self, name: str, label: str) -> Any:
        """Return a param that may be one value or a mapping label -> value, for one label."""
        value = getattr(self, name)
        return value.get(label, self.label_defaults[name]) if isinstance(value, Mapping) else value

    def check_params(self) -> Self:
        """Return self once class weights, solver and featurizer arguments are checked."""
        if "class_weight" in self.label_defaults:
            for label in self.labels:
                if self.label_param("class_weight", label) not in CLASS_WEIGHTS:
                    raise ToxiguardError(
                        f"{self.family}: class_weight must be one of {CLASS_WEIGHTS} "
                        f"(or a mapping label -> one of them), got {self.class_weight!r}"
                    )
        solver = getattr(self, "solver", None)
        if solver is not None and solver not in SOLVERS:
            raise ToxiguardError(f"{self.family}: solver must be one of {SOLVERS}, got {solver!r}")
        TfidfFeaturizer(self.feature_params())  # raises ToxiguardError for bad feature params
        return self

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
        self.check_params()
        target = np.asarray(labels)
        if target.ndim != 2 or target.shape != (len(texts), len(self.labels)):
            raise ToxiguardError(
                f"{self.family}: expected labels of shape ({len(texts)}, {len(self.labels)}), "
                f"got {target.shape}"
            )
        n_jobs = int(self.n_jobs)
        featurizer = TfidfFeaturizer(self.feature_params(), n_jobs=n_jobs)
        logger.info("%s: featurizing %d texts", self.family, len(texts))
        features = featurizer.fit_transform(texts)
        estimators = Parallel(n_jobs=n_jobs, backend=self.label_backend)(
            delayed(self._fit_label)(features, target[:, j], j) for j in range(len(self.labels))
        )
        self._set_state(featurizer, estimators)
        if validation is not None:
            self._log_validation(validation)
        return self

    def _set_state(self, featurizer: TfidfFeaturizer, estimators: Sequence[Any]) -> None:
        """Set the fitted state: featurizer, per-label estimators and, where possible, the head."""
        self.featurizer_ = featurizer
        self.estimators_ = list(estimators)
        # All labels as one product, where the estimators allow it (`stacked_logistic_head`).
        self.head_ = stacked_logistic_head(self.estimators_)

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
        aucs = label_roc_aucs(np.asarray(validation[1]), self.predict_proba(validation[0]))
        for label, auc in aucs.items():
            if auc is not None:
                logger.info("%s: validation ROC-AUC %s %.4f", self.family, label, auc)

    def fitted_featurizer(self) -> TfidfFeaturizer:
        """Return the fitted featurizer, or raise ToxiguardError before `fit`."""
        featurizer: TfidfFeaturizer | None = getattr(self, "featurizer_", None)
        if featurizer is None:
            raise ToxiguardError(f"{self.family}: the model is not fitted")
        return featurizer

    def predict_proba(self, texts: Sequence[str]) -> FloatArray:
        """Return an (n, 6) float64 array of probabilities in label order."""
        featurizer = self.fitted_featurizer()
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        return self.proba_of_features(featurizer.transform(texts))

    def proba_of_features(self, features: sp.csr_matrix) -> FloatArray:
        """Return the (n, 6) probabilities of featurized rows, as `predict_proba` computes them."""
        if self.head_ is not None:
            weights, biases = self.head_
            return np.asarray(expit(features @ weights + biases), dtype=np.float64)
        columns = [estimator.predict_proba(features)[:, 1] for estimator in self.estimators_]
        return np.clip(np.column_stack(columns).astype(np.float64), 0.0, 1.0)

    def logit_terms(self, columns: Columns) -> LogitHead | None:
        """Return (weights (len(columns), 6), biases (6,)) such that each label's logit is
        features[:, columns] @ weights + biases for rows whose features lie in `columns`; None
        when a label's classifier is not linear (`classifiers.logit_weights`: for tfidf-svm, the
        calibration folds' mean calibrated logit)."""
        featurizer = self.fitted_featurizer()
        if self.head_ is not None:
            weights, biases = self.head_
            return weights[columns], biases
        return stack_logits(self.estimators_, featurizer.n_features, columns)

    # The state stays a joblib pickle, loaded only after `ModelPackage.load` has checked its
    # sha256 against the package's manifest. skops 0.16 (`skops.io`, loading only trusted
    # types) was tried: it round-trips every family with trusted types derived from what we
    # save (our featurizers, NBLogistic, scikit-learn's calibration classes), but its dump time
    # grows with the square of the word vocabulary (a dict in TfidfVectorizer): complement-nb
    # on 20,000 shared comments took 4.4 s at 10,000 terms, 27 s at 20,000, 111 s at 40,000, and
    # at the default 200,000 terms it had not finished after 9 minutes; joblib dumps that model
    # in 5.8 s and loads it in 2.0 s (51 MB).
    def save_state(self, directory: Path) -> None:
        """Write the featurizer and the per-label classifiers into one joblib file."""
        featurizer = self.fitted_featurizer()
        state = {"featurizer": featurizer, "estimators": self.estimators_}
        joblib.dump(state, directory / STATE_FILE, compress=3)

    def load_state(self, directory: Path) -> None:
        """Read the state written by `save_state` (ModelIntegrityError if it cannot be read)."""
        path = directory / STATE_FILE
        if not path.is_file():
            raise ModelNotFoundError(f"{directory}: no {self.family} state ({STATE_FILE} missing)")
        try:
            state = joblib.load(path)
            featurizer, estimators = state["featurizer"], state["estimators"]
        except Exception as error:  # truncated or foreign bytes raise anything (EOFError, KeyError)
            raise ModelIntegrityError(
                f"{path}: not a readable {self.family} state ({error_line(error)})"
            ) from error
        if not isinstance(featurizer, TfidfFeaturizer):
            raise ModelIntegrityError(f"{path}: holds no {self.family} featurizer")
        self._set_state(featurizer, estimators)


# Chosen by measurement on the shared data (benchmarks/baselines.py, benchmarks/README.md); the
# same values as FEATURE_DEFAULTS, as immutable defaults of every family's constructor.
CLEANING: Final = tuple(FEATURE_DEFAULTS["cleaning"])
WORD_NGRAMS: Final = tuple(FEATURE_DEFAULTS["word_ngrams"])
CHAR_NGRAMS: Final = tuple(FEATURE_DEFAULTS["char_ngrams"])
WORD_MIN_DF: Final = int(FEATURE_DEFAULTS["word_min_df"])
CHAR_MIN_DF: Final = int(FEATURE_DEFAULTS["char_min_df"])
WORD_MAX_FEATURES: Final = int(FEATURE_DEFAULTS["word_max_features"])
CHAR_MAX_FEATURES: Final = int(FEATURE_DEFAULTS["char_max_features"])
SUBLINEAR_TF: Final = bool(FEATURE_DEFAULTS["sublinear_tf"])
PerLabel = float | Mapping[str, float]
ClassWeight = str | None | Mapping[str, str | None]


def logistic_regression(model: TfidfLogisticModel | NBSVMModel, label: str) -> LogisticRegression:
    """Return the logistic regression of one label, as the model's params describe it."""
    return LogisticRegression(
        C=float(model.label_param("C", label)),
        class_weight=model.label_param("class_weight", label),
        solver=str(model.solver),
        tol=float(model.tol),
        max_iter=int(model.max_iter),
        random_state=int(model.seed),
    )


# Measured on the shared data (benchmarks/README.md): lbfgs reaches liblinear's validation ROC-AUC
# in under half its CPU time on these features (tfidf-lr 22 s against 40 s, nbsvm 20 s against
# 52 s for six labels), and converges in under 100 iterations.
class TfidfLogisticModel(LinearTextModel):
    """Word + char n-gram TF-IDF and one logistic regression per label."""

    family = "tfidf-lr"
    label_defaults: ClassVar[dict[str, Any]] = {"C": 1.0, "class_weight": "balanced"}

    def __init__(
        self,
        *,
        C: PerLabel = 1.0,  # noqa: N803 (scikit-learn's name)
        class_weight: ClassWeight = "balanced",
        solver: str = "lbfgs",
        tol: float = 1e-4,
        max_iter: int = 200,
        cleaning: Sequence[str] = CLEANING,
        word_ngrams: Sequence[int] = WORD_NGRAMS,
        word_min_df: int = WORD_MIN_DF,
        word_max_features: int | None = WORD_MAX_FEATURES,
        char_ngrams: Sequence[int] = CHAR_NGRAMS,
        char_min_df: int = CHAR_MIN_DF,
        char_max_features: int | None = CHAR_MAX_FEATURES,
        sublinear_tf: bool = SUBLINEAR_TF,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.cleaning = cleaning
        self.word_ngrams = word_ngrams
        self.word_min_df = word_min_df
        self.word_max_features = word_max_features
        self.char_ngrams = char_ngrams
        self.char_min_df = char_min_df
        self.char_max_features = char_max_features
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.n_jobs = n_jobs

    def make_estimator(self, label: str) -> LogisticRegression:
        """Return this label's logistic regression."""
        return logistic_regression(self, label)


class NBSVMModel(LinearTextModel):
    """NB-SVM: naive-Bayes log-count ratios per label, then logistic regression on the scaled
    TF-IDF features (Wang & Manning 2012, as in the well-known Kaggle kernel)."""

    family = "nbsvm"
    label_defaults: ClassVar[dict[str, Any]] = {"C": 0.5, "class_weight": "balanced"}

    def __init__(
        self,
        *,
        C: PerLabel = 0.5,  # noqa: N803 (scikit-learn's name)
        class_weight: ClassWeight = "balanced",
        solver: str = "lbfgs",
        tol: float = 1e-4,
        max_iter: int = 200,
        alpha: float = 1.0,
        cleaning: Sequence[str] = CLEANING,
        word_ngrams: Sequence[int] = WORD_NGRAMS,
        word_min_df: int = WORD_MIN_DF,
        word_max_features: int | None = WORD_MAX_FEATURES,
        char_ngrams: Sequence[int] = CHAR_NGRAMS,
        char_min_df: int = CHAR_MIN_DF,
        char_max_features: int | None = CHAR_MAX_FEATURES,
        sublinear_tf: bool = SUBLINEAR_TF,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.alpha = alpha
        self.cleaning = cleaning
        self.word_ngrams = word_ngrams
        self.word_min_df = word_min_df
        self.word_max_features = word_max_features
        self.char_ngrams = char_ngrams
        self.char_min_df = char_min_df
        self.char_max_features = char_max_features
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.n_jobs = n_jobs

    def make_estimator(self, label: str) -> NBLogistic:
        """Return this label's logistic regression on NB-scaled features."""
        return NBLogistic(float(self.alpha), logistic_regression(self, label))


class TfidfSVMModel(LinearTextModel):
    """TF-IDF and one linear SVM per label, probabilities calibrated by cross-validation.

    The dual solver is about four times faster here than the primal one, but it draws from
    liblinear's one process-wide random generator, so two labels fitted in threads at the same
    time would make the fit irreproducible: labels are fitted in worker processes instead (the
    feature matrix goes to them once, memory-mapped).
    """

    family = "tfidf-svm"
    label_backend = "loky"
    label_defaults: ClassVar[dict[str, Any]] = {"C": 0.1, "class_weight": None}

    def __init__(
        self,
        *,
        C: PerLabel = 0.1,  # noqa: N803 (scikit-learn's name)
        class_weight: ClassWeight = None,
        calibration: str = "sigmoid",
        calibration_folds: int = 3,
        cleaning: Sequence[str] = CLEANING,
        word_ngrams: Sequence[int] = WORD_NGRAMS,
        word_min_df: int = WORD_MIN_DF,
        word_max_features: int | None = WORD_MAX_FEATURES,
        char_ngrams: Sequence[int] = CHAR_NGRAMS,
        char_min_df: int = CHAR_MIN_DF,
        char_max_features: int | None = CHAR_MAX_FEATURES,
        sublinear_tf: bool = SUBLINEAR_TF,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_folds = calibration_folds
        self.cleaning = cleaning
        self.word_ngrams = word_ngrams
        self.word_min_df = word_min_df
        self.word_max_features = word_max_features
        self.char_ngrams = char_ngrams
        self.char_min_df = char_min_df
        self.char_max_features = char_max_features
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.n_jobs = n_jobs

    def make_estimator(self, label: str) -> CalibratedClassifierCV:
        """Return a LinearSVC wrapped in CalibratedClassifierCV with this label's C."""
        svm = LinearSVC(
            C=float(self.label_param("C", label)),
            class_weight=self.label_param("class_weight", label),
            random_state=int(self.seed),
        )
        return CalibratedClassifierCV(
            svm, method=str(self.calibration), cv=int(self.calibration_folds)
        )


class ComplementNBModel(LinearTextModel):
    """Complement naive Bayes per label on the TF-IDF features (the cheap baseline)."""

    family = "complement-nb"
    label_defaults: ClassVar[dict[str, Any]] = {"alpha": 0.01}

    def __init__(
        self,
        *,
        alpha: PerLabel = 0.01,
        cleaning: Sequence[str] = CLEANING,
        word_ngrams: Sequence[int] = WORD_NGRAMS,
        word_min_df: int = WORD_MIN_DF,
        word_max_features: int | None = WORD_MAX_FEATURES,
        char_ngrams: Sequence[int] = CHAR_NGRAMS,
        char_min_df: int = CHAR_MIN_DF,
        char_max_features: int | None = CHAR_MAX_FEATURES,
        sublinear_tf: bool = SUBLINEAR_TF,
        seed: int = 42,
        n_jobs: int = 2,
    ) -> None:
        self.alpha = alpha
        self.cleaning = cleaning
        self.word_ngrams = word_ngrams
        self.word_min_df = word_min_df
        self.word_max_features = word_max_features
        self.char_ngrams = char_ngrams
        self.char_min_df = char_min_df
        self.char_max_features = char_max_features
        self.sublinear_tf = sublinear_tf
        self.seed = seed
        self.n_jobs = n_jobs

    def make_estimator(self, label: str) -> ComplementNB:
        """Return a ComplementNB with the configured smoothing."""
        return ComplementNB(alpha=float(self.label_param("alpha", label)))
