"""Times on the pages and in the API are UTC and say so, whatever time zone the database
session runs in: PostgreSQL is driven here with ``PGTZ=America/New_York`` (as a client
machine set to New York would), SQLite as it is."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from jackfield.service import Principal, Role
from jackfield.store.models_outbox import RuntimeUnit


@pytest.fixture(autouse=True)
def new_york_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before ``jf`` opens its connections: libpq gives each session this zone."""
    monkeypatch.setenv("PGTZ", "America/New_York")


def near_now(text: str, fmt: str) -> bool:
    """``text`` (a time shown on a page, format ``fmt``) is the current UTC time."""
    now = datetime.now(UTC)
    shown = datetime.strptime(text, fmt).replace(tzinfo=UTC)
    if "%Y" not in fmt:  # a time of day: today's, or (just past midnight) yesterday's
        days = (now.date() + timedelta(days=d) for d in (-1, 0, 1))
        return any(near_now(f"{day} {text}", f"%Y-%m-%d {fmt}") for day in days)
    return abs(shown - now) < timedelta(minutes=3)


def test_times_are_utc_and_labelled_whatever_the_session_zone(
    client: httpx2.Client, api: Any, jf: Any, ui_user: Any, tmp_path: Path
) -> None:
    who = Principal(ui_user.organization_id, "t", Role.ADMIN)
    store = jf.connectors.create(
        who,
        name="files",
        category="storage",
        provider_type="local_fs",
        config={"root": str(tmp_path / "files")},
    )
    jf.connectors.test(who, store["id"])
    echo = jf.connectors.create(who, name="loop", category="messaging", provider_type="echo")
    jf.connectors.test(who, echo["id"])
    jf.connectors.set_enabled(who, echo["id"], True)
    jf.send(echo["id"], {"text": "hi"})
    with jf.db.transaction() as s:  # a unit that crashed and waits to restart in 30 s
        s.add(
            RuntimeUnit(
                connector_id=echo["id"],
                node="n1",
                organization_id=ui_user.organization_id,
                liveness="crashed",
                next_restart_at=datetime.now(UTC) + timedelta(seconds=30),
            )
        )

    # the API answers in UTC
    answer = client.get(f"/api/connectors/{store['id']}").json()
    for field in ("last_tested_at", "created_at", "updated_at"):
        assert answer[field].endswith("+00:00"), answer

    listing = client.get("/connectors").text
    texts = re.findall(r'<time datetime="[^"]*">([^<]*)</time>', listing)
    assert len(texts) == 2 and all(near_now(t, "%Y-%m-%d %H:%M UTC") for t in texts), texts
    detail = client.get(f"/connectors/{store['id']}").text
    [text] = re.findall(r'<time datetime="[^"]*">([^<]*)</time>', detail)
    assert near_now(text, "%Y-%m-%d %H:%M UTC"), text

    outbox = client.get("/outbox").text
    texts = re.findall(r'<time datetime="[^"]*">([^<]*)</time>', outbox)
    assert texts and all(near_now(t, "%Y-%m-%d %H:%M:%S UTC") for t in texts), texts

    runtime = client.get("/runtime").text
    [text] = re.findall(r'restart at <time datetime="[^"]*">([^<]*)</time>', runtime)
    assert near_now(text, "%H:%M:%S UTC"), text
    assert "UTC UTC" not in runtime
