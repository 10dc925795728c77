"""Prometheus metrics: one registry per app (so tests can build several apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from api.db import STATUSES, Audit


class _JobsByStatus:
    """Reads the job counts from the database at scrape time: the DB is the truth, not a counter."""

    def __init__(self, sessions):
        self.sessions = sessions

    def collect(self):
        gauge = GaugeMetricFamily("pgolf_jobs", "Audits in the database by status", labels=["status"])
        counts = dict.fromkeys(STATUSES, 0)
        try:
            with self.sessions() as s:
                counts.update(dict(s.execute(select(Audit.status, func.count()).group_by(Audit.status)).all()))
        except SQLAlchemyError:
            return  # /healthz reports the database; a scrape must not fail because of it
        for status, n in counts.items():
            gauge.add_metric([status], n)
        yield gauge


class Metrics:
    def __init__(self, sessions):
        r = self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "pgolf_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_seconds = Histogram(
            "pgolf_http_request_duration_seconds", "HTTP request latency", ["route"], registry=r
        )
        self.submitted = Counter(
            "pgolf_audits_submitted", "Audit submissions", ["kind", "outcome"], registry=r
        )
        self.finished = Counter(
            "pgolf_audits_finished", "Audits that reached a final state", ["status", "verdict"], registry=r
        )
        self.audit_seconds = Histogram(
            "pgolf_audit_duration_seconds", "Static audit wall time in a worker process", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
        )
        self.recovered = Counter(
            "pgolf_jobs_recovered", "Interrupted jobs found and re-queued or failed", ["outcome"], registry=r
        )
        self.rate_limited = Counter("pgolf_rate_limited", "Requests refused by the rate limit", registry=r)
        r.register(_JobsByStatus(sessions))
