"""Score the alerts against the simulator's log of injected anomalies: precision and recall.

The simulator logs every anomaly it plants (JSON lines: kind, event_id, customer_id, product_id,
event_time, start, end, detail). Each planted kind that an alert rule should catch is matched to
alerts of one type:

- ``large_order`` -> ``unusual_amount`` on the same event_id, or on the same customer in the
  same minute (the planted order and the alerted one can differ when the customer ordered twice);
- ``customer_burst`` -> ``customer_burst`` for the same customer whose window overlaps
  [start, end];
- ``sales_drop`` -> ``sales_drop`` for a minute overlapping [start, end].

Precision of a kind = alerts of its type that match a planted anomaly / alerts of its type;
recall = planted anomalies matched by an alert / planted anomalies. Other planted kinds (late,
out-of-order, malformed) are handled by the query, not by alerts, and are not scored here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sparkmart.io.postgres import PgSettings, query_rows
from sparkmart.stream.simulator import read_anomalies
from sparkmart.stream.tables import ALERTS

# planted anomaly kind -> the alert type that should catch it
SCORED_KINDS: dict[str, str] = {
    "large_order": "unusual_amount",
    "customer_burst": "customer_burst",
    "sales_drop": "sales_drop",
}
ALERT_WINDOW = dt.timedelta(minutes=1)  # customer_burst and sales_drop alerts are per minute
TARGET = 0.9  # issue 4: precision and recall >= 0.9 for each planted kind


@dataclass(frozen=True)
class KindScore:
    """How one planted kind was caught by its alert type."""

    kind: str
    alert_type: str
    planted: int
    alerts: int
    matched_anomalies: int
    matched_alerts: int

    @property
    def precision(self) -> float | None:
        return self.matched_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.matched_anomalies / self.planted if self.planted else None

    @property
    def meets_target(self) -> bool:
        return all(v is not None and v >= TARGET for v in (self.precision, self.recall))


def _time(value: Any) -> dt.datetime | None:
    """A timestamp from the log or PostgreSQL as aware UTC (naive values are UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        stamp = value
    elif hasattr(value, "to_pydatetime"):  # pandas Timestamp
        stamp = value.to_pydatetime()
    else:
        stamp = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def _minute(stamp: dt.datetime | None) -> dt.datetime | None:
    return None if stamp is None else stamp.replace(second=0, microsecond=0)


def _key(value: Any) -> str | None:
    return None if value is None else str(value)


def _overlaps(start: dt.datetime | None, anomaly: Mapping[str, Any]) -> bool:
    """The alert window [start, start + 1 minute) overlaps the anomaly's [start, end).

    An anomaly without a length (start = end) is a point that must fall inside the window.
    """
    begin, end = _time(anomaly.get("start")), _time(anomaly.get("end"))
    begin = begin or _time(anomaly.get("event_time"))
    end = end or begin
    if start is None or begin is None or end is None:
        return False
    if end > begin:
        return start < end and begin < start + ALERT_WINDOW
    return start <= begin < start + ALERT_WINDOW


def _matches(kind: str, alert: Mapping[str, Any], anomaly: Mapping[str, Any]) -> bool:
    if kind == "large_order":
        if anomaly.get("event_id") and _key(alert.get("event_id")) == _key(anomaly["event_id"]):
            return True
        same_customer = _key(alert.get("alert_key")) == _key(anomaly.get("customer_id"))
        alert_minute = _minute(_time(alert.get("event_time")))
        return (
            same_customer
            and alert_minute is not None
            and alert_minute == _minute(_time(anomaly.get("event_time")))
        )
    if kind == "customer_burst":
        same_customer = _key(alert.get("alert_key")) == _key(anomaly.get("customer_id"))
        return same_customer and _overlaps(_time(alert.get("event_time")), anomaly)
    if kind == "sales_drop":
        return _overlaps(_time(alert.get("event_time")), anomaly)
    raise ValueError(f"no alert matching defined for anomaly kind {kind!r}")


def _records(alerts: Any) -> list[Mapping[str, Any]]:
    """Alerts as a list of mappings, from a pandas DataFrame, Spark Rows or dicts."""
    if hasattr(alerts, "to_dict") and hasattr(alerts, "columns"):
        return list(alerts.to_dict("records"))
    return [a.asDict() if hasattr(a, "asDict") else a for a in alerts]


def score_alerts(alerts: Any, anomalies: Iterable[Mapping[str, Any]]) -> dict[str, KindScore]:
    """Per planted kind: planted, alerts, matches, precision and recall.

    ``alerts``: rows with at least alert_type, alert_key, event_time, event_id (a pandas
    DataFrame, Spark Rows or dicts); ``anomalies``: the simulator's log records.
    """
    alert_rows = _records(alerts)
    planted = list(anomalies)
    scores = {}
    for kind, alert_type in SCORED_KINDS.items():
        kind_alerts = [a for a in alert_rows if a.get("alert_type") == alert_type]
        kind_planted = [a for a in planted if a.get("kind") == kind]
        matched_alerts = sum(
            any(_matches(kind, alert, anomaly) for anomaly in kind_planted) for alert in kind_alerts
        )
        matched_anomalies = sum(
            any(_matches(kind, alert, anomaly) for alert in kind_alerts) for anomaly in kind_planted
        )
        scores[kind] = KindScore(
            kind, alert_type, len(kind_planted), len(kind_alerts), matched_anomalies, matched_alerts
        )
    return scores


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_scores(scores: Mapping[str, KindScore]) -> str:
    """A plain-text table of the scores, one line per planted kind."""
    header = (
        f"{'planted kind':<16}{'alert type':<16}{'planted':>8}{'alerts':>8}"
        f"{'caught':>8}{'true':>8}{'precision':>11}{'recall':>8}  target"
    )
    lines = [header, "-" * len(header)]
    for score in scores.values():
        verdict = "ok" if score.meets_target else ("n/a" if not score.planted else "MISSED")
        lines.append(
            f"{score.kind:<16}{score.alert_type:<16}{score.planted:>8}{score.alerts:>8}"
            f"{score.matched_anomalies:>8}{score.matched_alerts:>8}"
            f"{_ratio(score.precision):>11}{_ratio(score.recall):>8}  {verdict}"
        )
    lines.append(
        f"caught = planted anomalies with a matching alert; true = alerts matching a planted "
        f"anomaly; target >= {TARGET} for each"
    )
    return "\n".join(lines)


def load_alerts(pg: PgSettings, query_name: str | None = None) -> list[dict[str, Any]]:
    """The scored alert types from ``streaming.alerts`` (of one query when named)."""
    rows = query_rows(
        pg,
        f"SELECT alert_type, alert_key, event_time, event_id FROM {ALERTS} "
        "WHERE alert_type = ANY(%s) AND (%s::text IS NULL OR query_name = %s::text)",
        (list(SCORED_KINDS.values()), query_name, query_name),
    )
    columns = ("alert_type", "alert_key", "event_time", "event_id")
    return [dict(zip(columns, row, strict=True)) for row in rows]


def load_and_score(
    pg: PgSettings, anomalies_dir: str | Path, query_name: str | None = None
) -> dict[str, KindScore]:
    """Score what is in ``streaming.alerts`` against the simulator's anomaly log (the
    ``anomalies`` directory under the streaming path, read with ``simulator.read_anomalies``)."""
    return score_alerts(load_alerts(pg, query_name), read_anomalies(anomalies_dir))
