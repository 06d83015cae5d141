"""Alerts: rules from the settings, de-duplication with a cool-down, a Slack-compatible webhook.

`evaluate_rules` turns one monitoring result into alert candidates; `apply_cooldown` drops those
raised for the same key within the cool-down (so a lasting drift alerts once, not every hour);
`deliver` posts the rest in one Slack-compatible message (`{"text": ..., "blocks": [...]}`)
with a timeout and retries, and never raises: a failing webhook does not fail the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
from sqlalchemy import Engine, func, insert, select, update

from toxiguard.monitoring.drift import OK, DriftResult
from toxiguard.monitoring.tables import alerts as alerts_table
from toxiguard.settings import Settings

logger = logging.getLogger(__name__)

DRIFT_RULE: Final = "drift_score"
MISSING_RULE: Final = "missing_share"
FLAGGED_RULE: Final = "flagged_rate"
QUALITY_RULE: Final = "live_quality"
#: Rules whose alert (past its cool-down) starts retraining.
RETRAIN_RULES: Final = frozenset({DRIFT_RULE})
_BACKOFF_S: Final = 0.5


@dataclass(frozen=True)
class Alert:
    """One alert candidate: which rule fired, on what value, against which threshold."""

    rule: str
    key: str
    severity: str
    message: str
    value: float | None
    threshold: float | None
    model_version: int | None

    def to_dict(self) -> dict[str, Any]:
        """Return the alert as JSON-ready data."""
        return asdict(self)


@dataclass(frozen=True)
class Delivery:
    """What happened to one webhook message."""

    delivered: bool
    attempts: int
    error: str | None = None


# The delivery error stored for alerts raised while no webhook was configured (not re-sent).
NO_WEBHOOK: Final = "no webhook configured"


def evaluate_rules(
    result: DriftResult,
    settings: Settings,
    model_version: int | None,
    live_roc_auc: float | None = None,
    baseline_roc_auc: float | None = None,
) -> list[Alert]:
    """Return the alerts the settings' rules raise for one monitoring result (none without data)."""
    found: list[Alert] = []
    if result.status != OK:
        return found
    version = f"version {model_version}" if model_version is not None else "unknown version"
    if result.drift_score is not None and result.drift_score > settings.alert_drift_score:
        drifted = ", ".join(c.column for c in result.columns if c.drifted)
        found.append(
            Alert(
                DRIFT_RULE,
                DRIFT_RULE,
                "critical",
                f"Data drift on {version}: {result.drifted_features} of {len(result.columns)} "
                f"columns drifted (drift_score {result.drift_score:.2f} > "
                f"{settings.alert_drift_score}): {drifted}",
                result.drift_score,
                settings.alert_drift_score,
                model_version,
            )
        )
    if result.missing_share is not None and result.missing_share > settings.alert_missing_share:
        found.append(
            Alert(
                MISSING_RULE,
                MISSING_RULE,
                "warning",
                f"Missing values on {version}: share {result.missing_share:.3f} > "
                f"{settings.alert_missing_share}",
                result.missing_share,
                settings.alert_missing_share,
                model_version,
            )
        )
    for label, rates in result.flagged_rate.items():
        change = rates["current"] - rates["reference"]
        if abs(change) > settings.alert_flagged_rate_change:
            found.append(
                Alert(
                    FLAGGED_RULE,
                    f"{FLAGGED_RULE}:{label}",
                    "warning",
                    f"Flagged rate of '{label}' on {version} moved from {rates['reference']:.1%} "
                    f"to {rates['current']:.1%} (change {change:+.1%}, limit "
                    f"±{settings.alert_flagged_rate_change:.0%})",
                    change,
                    settings.alert_flagged_rate_change,
                    model_version,
                )
            )
    if live_roc_auc is not None and baseline_roc_auc is not None:
        drop = baseline_roc_auc - live_roc_auc
        if drop > settings.alert_quality_drop:
            found.append(
                Alert(
                    QUALITY_RULE,
                    QUALITY_RULE,
                    "critical",
                    f"Live quality drop on {version}: mean ROC-AUC {live_roc_auc:.3f} on labelled "
                    f"traffic against {baseline_roc_auc:.3f} on the test split (drop {drop:.3f} > "
                    f"{settings.alert_quality_drop})",
                    live_roc_auc,
                    baseline_roc_auc - settings.alert_quality_drop,
                    model_version,
                )
            )
    return found


def last_raised(engine: Engine, keys: Sequence[str]) -> dict[str, datetime]:
    """Return, per alert key, when an alert of that key was last raised (stored)."""
    if not keys:
        return {}
    query = (
        select(alerts_table.c.alert_key, func.max(alerts_table.c.created_at))
        .where(alerts_table.c.alert_key.in_(list(keys)))
        .group_by(alerts_table.c.alert_key)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return {str(key): _aware(at) for key, at in rows if at is not None}


def _aware(moment: datetime) -> datetime:
    """Return the datetime with UTC attached when the database dropped the zone (SQLite)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def apply_cooldown(
    engine: Engine, candidates: Sequence[Alert], cooldown_minutes: float, now: datetime
) -> tuple[list[Alert], list[Alert]]:
    """Return (raised, suppressed): candidates whose key alerted within the cool-down are held."""
    last = last_raised(engine, [alert.key for alert in candidates])
    window = timedelta(minutes=cooldown_minutes)
    raised: list[Alert] = []
    suppressed: list[Alert] = []
    for alert in candidates:
        previous = last.get(alert.key)
        (suppressed if previous is not None and now - previous < window else raised).append(alert)
    return raised, suppressed


def slack_payload(alerts: Sequence[Alert], context: dict[str, Any]) -> dict[str, Any]:
    """Return a Slack-compatible incoming-webhook body for the alerts of one run."""
    title = f"toxiguard: {len(alerts)} monitoring alert{'s' if len(alerts) != 1 else ''}"
    lines = [f"• [{alert.severity}] {alert.message}" for alert in alerts]
    details = ", ".join(f"{key}: {value}" for key, value in context.items() if value is not None)
    text = "\n".join([title, *lines] + ([details] if details else []))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
    ]
    if details:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": details}]})
    return {"text": text, "blocks": blocks}


def deliver(url: str, payload: dict[str, Any], timeout_s: float, retries: int) -> Delivery:
    """Return how posting the payload went: retried on errors, 5xx and 429; never raises."""
    error: str | None = None
    attempts = 0
    for attempt in range(retries + 1):
        attempts = attempt + 1
        try:
            response = httpx.post(url, json=payload, timeout=timeout_s)
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        else:
            if response.is_success:
                return Delivery(True, attempts)
            error = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the request itself is wrong: sending it again cannot help
        if attempt < retries:
            time.sleep(_BACKOFF_S * 2**attempt)
    logger.warning("alert webhook failed after %d attempt(s): %s", attempts, error)
    return Delivery(False, attempts, error)


def redeliver(engine: Engine, settings: Settings, now: datetime) -> Delivery | None:
    """Send again, in one message, the recent alerts whose webhook delivery failed.

    Alerts raised while no webhook was configured are not sent. On success they are marked
    delivered; on failure they stay as they are for the next run. Never raises.
    """
    if not settings.alert_webhook_url or settings.alert_redelivery_hours <= 0:
        return None
    since = now - timedelta(hours=settings.alert_redelivery_hours)
    query = (
        select(alerts_table)
        .where(
            alerts_table.c.delivered.is_(False),
            alerts_table.c.delivery_error != NO_WEBHOOK,
            alerts_table.c.created_at >= since,
        )
        .order_by(alerts_table.c.id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    if not rows:
        return None
    failed = [
        Alert(
            row["rule"],
            row["alert_key"],
            row["severity"],
            f"{row['message']} (raised {_aware(row['created_at']):%Y-%m-%d %H:%M} UTC)",
            row["value"],
            row["threshold"],
            row["model_version"],
        )
        for row in rows
    ]
    payload = slack_payload(failed, {"re-sent": "earlier delivery failed"})
    delivery = deliver(
        settings.alert_webhook_url,
        payload,
        settings.alert_webhook_timeout_seconds,
        settings.alert_webhook_retries,
    )
    with engine.begin() as connection:
        connection.execute(
            update(alerts_table)
            .where(alerts_table.c.id.in_([row["id"] for row in rows]))
            .values(
                delivered=delivery.delivered,
                delivery_error=None if delivery.delivered else delivery.error,
            )
        )
    logger.info(
        "re-sent %d undelivered alert(s): %s",
        len(rows),
        "delivered" if delivery.delivered else delivery.error,
    )
    return delivery


def store_alerts(
    engine: Engine,
    raised: Sequence[Alert],
    run_id: int | None,
    now: datetime,
    delivery: Delivery | None,
    retraining: dict[str, str] | None = None,
) -> list[int]:
    """Insert the raised alerts (with delivery outcome and any retraining started); return ids."""
    ids: list[int] = []
    with engine.begin() as connection:
        for alert in raised:
            row = {
                "created_at": now,
                "run_id": run_id,
                "rule": alert.rule,
                "alert_key": alert.key,
                "severity": alert.severity,
                "message": alert.message,
                "value": alert.value,
                "threshold": alert.threshold,
                "model_version": alert.model_version,
                "delivered": bool(delivery and delivery.delivered),
                "delivery_error": delivery.error if delivery else NO_WEBHOOK,
                "retraining": (retraining or {}).get(alert.key),
            }
            key = connection.execute(insert(alerts_table).values(**row)).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
    return ids


__all__ = [
    "DRIFT_RULE",
    "FLAGGED_RULE",
    "MISSING_RULE",
    "NO_WEBHOOK",
    "QUALITY_RULE",
    "RETRAIN_RULES",
    "Alert",
    "Delivery",
    "apply_cooldown",
    "deliver",
    "evaluate_rules",
    "last_raised",
    "redeliver",
    "slack_payload",
    "store_alerts",
]
