"""Instance-wide metrics for Prometheus: totals only, no organization or secret in them.

Gauges count the rows there are now (every deployment's, read from the database);
counters count what this process did since it started (Prometheus's ``rate()`` takes
their resets in its stride), so throughput and error rates can be derived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select

from ..store import Connector, Database
from ..store.models_inbound import InboxEvent
from ..store.models_outbox import OutboxMessage, RuntimeUnit
from .messages import STATES


@dataclass(frozen=True)
class Metric:
    name: str
    help: str
    samples: list[tuple[dict[str, str], float]]
    kind: str = "gauge"


def collect(db: Database, deliveries: Mapping[str, int] | None = None) -> list[Metric]:
    """Read the current counts, in a snapshot: counting a large outbox takes a while
    (about 0.2 s per million rows on SQLite), and must not hold up writers meanwhile.
    ``deliveries``: this process's delivery outcomes so far, by outcome (a counter)."""
    with db.snapshot() as s:
        outbox = s.execute(
            select(OutboxMessage.state, func.count()).group_by(OutboxMessage.state)
        ).all()
        units = s.execute(
            select(RuntimeUnit.liveness, func.count()).group_by(RuntimeUnit.liveness)
        ).all()
        connectors = s.execute(
            select(Connector.category, Connector.status, func.count()).group_by(
                Connector.category, Connector.status
            )
        ).all()
        inbox = s.scalar(select(func.count()).select_from(InboxEvent)) or 0
    return [
        Metric(
            "jackfield_outbox_messages",
            "Outbox messages by state.",
            # every state, 0 included: a series that vanishes when pruned reads as stale
            [({"state": state}, dict(outbox).get(state, 0)) for state in STATES],
        ),
        Metric("jackfield_inbox_events", "Inbound events in the inbox.", [({}, inbox)]),
        Metric(
            "jackfield_runtime_units",
            "Supervised units by liveness.",
            [({"liveness": liveness}, n) for liveness, n in units],
        ),
        Metric(
            "jackfield_connectors",
            "Connectors by category and status.",
            [({"category": c, "status": st}, n) for c, st, n in connectors],
        ),
        *(
            [
                Metric(
                    "jackfield_outbox_deliveries_total",
                    "Delivery outcomes recorded by this process, by outcome.",
                    [({"outcome": o}, n) for o, n in sorted(deliveries.items())],
                    kind="counter",
                )
            ]
            if deliveries is not None
            else []
        ),
    ]


def exposition(metrics: list[Metric]) -> str:
    """The Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    for metric in metrics:
        lines += [f"# HELP {metric.name} {metric.help}", f"# TYPE {metric.name} {metric.kind}"]
        for labels, value in metric.samples:
            rendered = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            lines.append(
                f"{metric.name}{{{rendered}}} {value:g}" if rendered else f"{metric.name} {value:g}"
            )
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
