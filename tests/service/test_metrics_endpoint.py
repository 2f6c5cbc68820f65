"""``GET /metrics`` speaks the Prometheus text format and counts what is there."""

import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx2
from sqlalchemy import func, select

from jackfield.service import metrics
from jackfield.store.models_outbox import OutboxMessage


def test_metrics_count_connectors_and_outbox(jf, admin, api):
    created = jf.connectors.create(admin, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    jf.send(created["id"], {"text": "hi"})
    response = httpx2.get(f"{api.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert "# TYPE jackfield_outbox_messages gauge" in body
    assert 'jackfield_connectors{category="messaging",status="connected"} 1' in body
    outbox = sum(
        float(v) for v in re.findall(r"^jackfield_outbox_messages\{[^}]*\} (\S+)$", body, re.M)
    )
    assert outbox == 1
    assert admin.organization_id not in body


def test_a_scrape_reads_a_snapshot_and_never_holds_up_a_writer(jf, admin):
    """Counting a large outbox takes a while (0.2 s per million rows on SQLite); before,
    the scrape took SQLite's write lock for all of it and every send waited."""
    created = jf.connectors.create(admin, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    with ThreadPoolExecutor(1) as writer:
        with jf.db.snapshot() as s:  # what ``metrics.collect`` reads in
            assert s.scalar(select(func.count()).select_from(OutboxMessage)) == 0
            sent = writer.submit(jf.send, created["id"], {"text": "while a scrape reads"})
            envelope = sent.result(timeout=10)  # committed while the read is still open
    assert jf.runtime.outbox.get(admin, envelope)["state"] == "pending"
    assert "jackfield_outbox_messages" in {m.name for m in metrics.collect(jf.db)}


def test_delivery_outcomes_are_counters_and_every_state_is_a_series(jf, admin, api):
    """Before, only gauges of current rows: no rate() of deliveries or failures, and a
    state's series vanished once retention pruned its rows."""
    created = jf.connectors.create(admin, name="echo", category="messaging", provider_type="echo")
    jf.connectors.test(admin, created["id"])
    jf.connectors.set_enabled(admin, created["id"], True)
    for payload in ({"text": "a"}, {"text": "b"}, {"text": "c", "simulate": "permanent"}):
        jf.send(created["id"], payload)

    def counters() -> dict[str, float]:
        body = httpx2.get(f"{api.url}/metrics").text
        found = re.findall(
            r'^jackfield_outbox_deliveries_total\{outcome="(\w+)"\} (\S+)$', body, re.M
        )
        return {outcome: float(value) for outcome, value in found}

    deadline = time.monotonic() + 20
    while counters().get("delivered") != 2 or counters().get("dead") != 1:
        assert time.monotonic() < deadline, counters()
        time.sleep(0.1)
    body = httpx2.get(f"{api.url}/metrics").text
    assert "# TYPE jackfield_outbox_deliveries_total counter" in body
    assert 'jackfield_outbox_messages{state="discarded"} 0' in body
