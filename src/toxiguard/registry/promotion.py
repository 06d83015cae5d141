"""Gated promotion of registered versions to champion, manual promotion, rollback, history.

The champion is an MLflow alias. The gate compares the new version with the champion on the
new job's test comments that the champion never saw (its training and validation comments are
saved with it as hashes): a retraining job's test split usually holds comments the champion
was trained on, and scoring it there would favour it. Every decision is written as tags on the
version and on its run; every change of champion is also appended to the registered model's
tags (`champion_history.00001`, ...), which is the history that `champion_history` reads back.
Not safe against two processes promoting the same registered model at the same moment.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from toxiguard.errors import ModelNotFoundError, RegistryError
from toxiguard.models.package import ModelPackage
from toxiguard.registry.client import connect, is_not_found, load_toxicity_model, registry_error
from toxiguard.registry.versions import alias_version, get_version
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

HISTORY_PREFIX = "champion_history."


@dataclass(frozen=True)
class PromotionDecision:
    """What the promotion gate decided for one new version, and why."""

    promoted: bool
    version: int
    champion_before: int | None
    new_score: float
    champion_score: float | None
    margin: float
    reason: str


@dataclass(frozen=True)
class Guard:
    """A figure besides ROC-AUC (higher is better, e.g. the audit's final bias score) that a new
    version may lose at most `margin` of against the champion, both measured on the same data."""

    metric: str
    new: float
    champion: float
    margin: float

    @property
    def holds(self) -> bool:
        """Return whether the new version is not worse than the champion by more than margin."""
        return self.new >= self.champion - self.margin

    def describe(self) -> str:
        """Return the comparison in words, e.g. 'bias_final_test 0.81 < champion 0.85 - 0.01'."""
        sign = ">=" if self.holds else "<"
        return (
            f"{self.metric} {self.new:.4f} {sign} champion {self.champion:.4f} "
            f"- margin {self.margin:g}"
        )


@dataclass(frozen=True)
class Comparison:
    """Both models' mean ROC-AUC on the same test comments, how many there were, and the
    guards the new version must also pass.

    `champion_score` is None when no fair comparison was possible: fewer test comments than
    `promotion_min_test_rows` unseen by the champion, or no label with both classes there.
    """

    new_score: float | None
    champion_score: float | None
    rows: int
    excluded: int
    guards: tuple[Guard, ...] = ()


def _now() -> str:
    """Return the current UTC time as an ISO 8601 string."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _tag_version_and_run(
    client: MlflowClient, settings: Settings, version: int, tags: dict[str, str]
) -> None:
    """Set the same tags on a registered version and on the run that produced it."""
    name = settings.registered_model_name
    model_version = get_version(client, settings, version)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, value)
    if model_version.run_id:
        client.log_batch(model_version.run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _record_event(client: MlflowClient, settings: Settings, event: dict[str, Any]) -> None:
    """Append one event to the champion history kept in the registered model's tags."""
    name = settings.registered_model_name
    tags = client.get_registered_model(name).tags
    numbers = [int(k.removeprefix(HISTORY_PREFIX)) for k in tags if k.startswith(HISTORY_PREFIX)]
    key = f"{HISTORY_PREFIX}{max(numbers, default=0) + 1:05d}"
    client.set_registered_model_tag(name, key, json.dumps(event))


def _move_champion(
    client: MlflowClient,
    settings: Settings,
    version: int,
    event: dict[str, Any],
) -> None:
    """Give `version` the champion alias (taking challenger off it) and record the event."""
    name = settings.registered_model_name
    client.set_registered_model_alias(name, settings.champion_alias, str(version))
    if alias_version(client, settings, settings.challenger_alias) == version:
        client.delete_registered_model_alias(name, settings.challenger_alias)
    _record_event(client, settings, event)
    _tag_version_and_run(
        client,
        settings,
        version,
        {"toxiguard.champion_since": event["at"], "toxiguard.champion_reason": event["reason"]},
    )
    logger.info("%s: version %s is now %s", event["event"], version, settings.champion_alias)


def gate_promotion(
    settings: Settings,
    version: int,
    new_score: float,
    compare: Callable[[ModelPackage], Comparison],
) -> PromotionDecision:
    """Return the decision after making `version` champion only if it beats the champion and
    passes every guard of the comparison.

    `new_score` is the new version's score on its whole test split (used when there is no
    champion yet); `compare` scores both on the test comments the champion has not seen. A
    version that beats the champion's score but fails a guard is not promoted; the reason names
    the guard.
    """
    client = connect(settings)
    name = settings.registered_model_name
    margin = settings.promotion_margin
    get_version(client, settings, version)
    champion = alias_version(client, settings, settings.champion_alias)
    if champion == version:
        reason = f"version {version} is already {settings.champion_alias}"
        return PromotionDecision(True, version, champion, float(new_score), None, margin, reason)
    champion_score: float | None = None
    guards: tuple[Guard, ...] = ()
    if champion is None:
        promoted, reason = True, "no champion yet"
    else:
        model, _ = load_toxicity_model(f"models:/{name}/{champion}", settings)
        comparison = compare(model)
        rows = f"on {comparison.rows} test comments"
        if comparison.excluded:
            rows += f" ({comparison.excluded} the champion was trained or tuned on left out)"
        if comparison.new_score is None or comparison.champion_score is None:
            promoted = False
            reason = (
                f"no fair comparison with champion v{champion}: {comparison.rows} test comments "
                f"it has not seen (at least {settings.promotion_min_test_rows} with both classes "
                "of a label needed); promote by hand if wanted"
            )
        else:
            new_score, champion_score = comparison.new_score, comparison.champion_score
            guards = comparison.guards
            beats = new_score > champion_score + margin
            sign = ">" if beats else "<="
            reason = (
                f"score {new_score:.5f} {sign} champion v{champion} {champion_score:.5f} "
                f"+ margin {margin:g} {rows}"
            )
            failed = [guard.describe() for guard in guards if not guard.holds]
            promoted = beats and not failed
            if beats and failed:
                reason += "; blocked by " + "; ".join(failed)
    at = _now()
    try:
        challenger = not promoted and _better_challenger(
            client, settings, champion, new_score, champion_score
        )
        decision = "promoted" if promoted else "challenger" if challenger else "not promoted"
        _tag_version_and_run(
            client,
            settings,
            version,
            {
                "toxiguard.decision": decision,
                "toxiguard.decision_reason": reason,
                "toxiguard.decided_at": at,
                "toxiguard.new_score": repr(float(new_score)),
                "toxiguard.champion_score": repr(champion_score),
                "toxiguard.champion_before": str(champion),
                "toxiguard.margin": repr(margin),
                "toxiguard.guards": json.dumps(
                    [{**asdict(guard), "holds": guard.holds} for guard in guards]
                ),
            },
        )
        if promoted:
            event = _event("promote", version, champion, at, reason, new_score, champion_score)
            _move_champion(client, settings, version, event)
        elif challenger:
            client.set_registered_model_alias(name, settings.challenger_alias, str(version))
            logger.info("version %s is %s: %s", version, settings.challenger_alias, reason)
    except MlflowException as error:
        raise registry_error(settings, error) from error
    return PromotionDecision(
        promoted, version, champion, float(new_score), champion_score, margin, reason
    )


def gate_thresholds(
    settings: Settings, version: int, base_version: int, reason: str
) -> PromotionDecision:
    """Return the decision on a version that is `base_version`'s model with new thresholds.

    Its scores are the base's, so the ROC-AUC gate cannot tell them apart: the thresholds were
    checked against their target on the feedback before they were registered, and this gate
    makes the version champion when its base still is (thresholds suggested for one champion
    say nothing of another). Decision and reason are recorded as the ROC-AUC gate records them.
    """
    client = connect(settings)
    try:
        champion = alias_version(client, settings, settings.champion_alias)
        promoted = champion == base_version
        why = (
            reason
            if promoted
            else f"{reason}; not promoted: version {base_version} is no longer "
            f"{settings.champion_alias} (version {champion} is): suggest again for it"
        )
        at = _now()
        _tag_version_and_run(
            client,
            settings,
            version,
            {
                "toxiguard.decision": "promoted" if promoted else "not promoted",
                "toxiguard.decision_reason": why,
                "toxiguard.decided_at": at,
                "toxiguard.champion_before": str(champion),
            },
        )
        if promoted:
            _move_champion(client, settings, version, _event("promote", version, champion, at, why))
    except MlflowException as error:
        raise registry_error(settings, error) from error
    score = _float_tag(get_version(client, settings, version).tags.get("test_roc_auc_mean"))
    return PromotionDecision(promoted, version, champion, score or float("nan"), score, 0.0, why)


def _better_challenger(
    client: MlflowClient,
    settings: Settings,
    champion: int | None,
    new_score: float,
    champion_score: float | None,
) -> bool:
    """Return whether a version the gate did not promote beats the current challenger.

    The challenger is the best version that is not champion, not the last trained: measured
    against the same champion, the larger lead over it on the same unseen comments wins; a fair
    comparison beats none; with none on either side, the higher test score. A challenger
    measured against an earlier champion gives way to any version measured against this one.
    """
    current = alias_version(client, settings, settings.challenger_alias)
    if current is None:
        return True
    tags = get_version(client, settings, current).tags
    if tags.get("toxiguard.champion_before") != str(champion):
        return True
    their_score = _float_tag(tags.get("toxiguard.new_score"))
    their_champion = _float_tag(tags.get("toxiguard.champion_score"))
    if champion_score is not None and their_champion is not None and their_score is not None:
        return new_score - champion_score > their_score - their_champion
    if champion_score is not None or their_champion is not None:
        return champion_score is not None  # a fair comparison beats none
    return their_score is None or new_score > their_score


def _float_tag(value: str | None) -> float | None:
    """Return a score tag as a float (None for a missing tag or 'None')."""
    try:
        return float(value) if value not in (None, "None") else None
    except ValueError:
        return None


def _event(
    kind: str,
    version: int,
    previous: int | None,
    at: str,
    reason: str,
    new_score: float | None = None,
    champion_score: float | None = None,
) -> dict[str, Any]:
    """Return one champion-history event as a JSON-ready dict."""
    return {
        "event": kind,
        "version": version,
        "previous": previous,
        "at": at,
        "reason": reason,
        "new_score": new_score,
        "champion_score": champion_score,
    }


def promote(settings: Settings, version: int, reason: str = "manual") -> None:
    """Make `version` the champion whatever its score, and record it in the history."""
    client = connect(settings)
    try:
        get_version(client, settings, version)
        previous = alias_version(client, settings, settings.champion_alias)
        if previous == version:
            logger.info("version %s is already %s", version, settings.champion_alias)
            return
        _move_champion(
            client, settings, version, _event("promote", version, previous, _now(), reason)
        )
    except MlflowException as error:
        raise registry_error(settings, error) from error


def champion_history(settings: Settings) -> list[dict[str, Any]]:
    """Return the promotions and rollbacks of the champion, oldest first."""
    client = connect(settings)
    try:
        tags = client.get_registered_model(settings.registered_model_name).tags
    except MlflowException as error:
        if is_not_found(error):
            return []
        raise registry_error(settings, error) from error
    keys = sorted(k for k in tags if k.startswith(HISTORY_PREFIX))
    return [json.loads(tags[k]) for k in keys]


def _champion_stack(history: list[dict[str, Any]]) -> list[int]:
    """Return the champions in force, oldest first: a promotion pushes, a rollback truncates."""
    stack: list[int] = []
    for event in history:
        version = int(event["version"])
        if event["event"] == "promote" and (not stack or stack[-1] != version):
            stack.append(version)
        elif event["event"] == "rollback":
            if version in stack:
                del stack[len(stack) - stack[::-1].index(version) :]
            else:
                stack.append(version)
    return stack


def rollback(settings: Settings) -> int:
    """Return the version made champion again: the champion before the current one."""
    client = connect(settings)
    try:
        current = alias_version(client, settings, settings.champion_alias)
        stack = _champion_stack(champion_history(settings))
        # If the alias was moved outside toxiguard, the last champion we recorded is the target.
        if stack and current is not None and stack[-1] == current:
            stack.pop()
        while stack:
            target = stack.pop()
            try:
                get_version(client, settings, target)
            except ModelNotFoundError:
                logger.warning("previous champion version %s no longer exists; skipped", target)
                continue
            reason = f"rollback from version {current}"
            _move_champion(
                client, settings, target, _event("rollback", target, current, _now(), reason)
            )
            return target
    except MlflowException as error:
        raise registry_error(settings, error) from error
    raise RegistryError(
        f"no earlier champion of model '{settings.registered_model_name}' to roll back to"
    )
