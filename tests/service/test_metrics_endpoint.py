"""``GET /metrics`` speaks the Prometheus text format and counts what is there."""

import re

import httpx2


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
