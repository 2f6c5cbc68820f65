"""Encryption at rest, the master-key check and key rotation."""

import base64
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from jackfield.app import Jackfield
from jackfield.secrets import MasterKey, SecretBox, SecretKeyError
from jackfield.secrets.keys import Keyring
from jackfield.settings import Settings
from jackfield.store import ConnectorParam


def key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def test_ciphertext_is_bound_to_its_context_and_key():
    box = SecretBox(Keyring(MasterKey.generate()))
    token = box.encrypt("s3cret", context="conn-1:password")
    assert "s3cret" not in token and token.startswith("jf1:")
    assert box.decrypt(token, context="conn-1:password") == "s3cret"
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        box.decrypt(token, context="conn-2:password")  # copied onto another connector
    other = SecretBox(Keyring(MasterKey.generate()))
    with pytest.raises(SecretKeyError, match="not configured"):
        other.decrypt(token, context="conn-1:password")
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretKeyError):
        box.decrypt(tampered, context="conn-1:password")


@pytest.mark.parametrize("bad", ["short", base64.b64encode(b"x" * 31).decode(), "!!!!"])
def test_a_malformed_master_key_is_refused(tmp_path, bad):
    with pytest.raises(SecretKeyError, match="not base64 of 32 bytes"):
        Jackfield(
            settings=Settings(
                database_url=f"sqlite:///{tmp_path}/db", data_dir=tmp_path, secret_key=bad
            )
        )


def make(database_url, data_dir, secret_key=None, fallbacks=""):
    return Jackfield(
        settings=Settings(
            database_url=database_url,
            data_dir=data_dir,
            secret_key=secret_key,
            secret_key_fallbacks=fallbacks,
        )
    )


def create_smtp(jf, password="pw-canary-1"):
    org = jf.accounts.create_org("acme")["id"]
    from jackfield.service import Principal

    who = Principal.operator(org)
    return who, jf.connectors.create(
        who,
        name="mail",
        category="email",
        provider_type="smtp",
        params=[{"key": "host", "value": "127.0.0.1"}, {"key": "password", "value": password}],
    )


def test_the_generated_key_file_is_private_and_reused(tmp_path, sqlite_url):
    first = make(sqlite_url, tmp_path / "data")
    _, conn = create_smtp(first)
    first.close()
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = make(sqlite_url, tmp_path / "data")
    assert again.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    again.close()


@contextmanager
def umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_fresh_data_dir_and_sqlite_database_are_private(tmp_path):
    """Before: with the usual umask 022 the data directory was 0755 and the database
    (password hashes, every organization's payloads) and its -wal/-shm files 0644."""
    data = tmp_path / "deploy" / ".jackfield"
    with umask(0o022):
        jf = make(f"sqlite:///{data / 'jackfield.db'}", data)
        create_smtp(jf)  # written: the -wal and -shm files exist now
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [data, *data.iterdir()]}
        jf.close()
    assert modes == {
        ".jackfield": 0o700,
        "jackfield.db": 0o600,
        "jackfield.db-wal": 0o600,
        "jackfield.db-shm": 0o600,
        "secret.key": 0o600,
    }
    assert stat.S_IMODE((tmp_path / "deploy").stat().st_mode) == 0o755  # a parent: as mkdir -p


def test_an_existing_data_dir_and_database_keep_the_modes_their_owner_gave(tmp_path):
    """An operator may share them with a group on purpose; Jackfield changes no mode."""
    data = tmp_path / "data"
    data.mkdir(mode=0o750)
    database = data / "shared.db"
    database.touch(mode=0o640)
    with umask(0o022):
        make(f"sqlite:///{database}", data).close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    assert stat.S_IMODE(database.stat().st_mode) == 0o640


def test_a_sqlite_uri_database_is_private_and_leaves_no_stray_file(tmp_path, monkeypatch):
    """SQLite's URI form (file:...?uri=true): before, an empty 'file:jf.db' was created
    beside the real database, which kept the umask's mode; an in-memory one left a file."""
    monkeypatch.chdir(tmp_path)
    with umask(0o022):
        make("sqlite:///file:jf.db?uri=true", tmp_path / "data").close()
        make("sqlite:///file:mem?mode=memory&cache=shared&uri=true", tmp_path / "data").close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "jf.db"]
    assert stat.S_IMODE((tmp_path / "jf.db").stat().st_mode) == 0o600


def test_start_with_the_wrong_key_is_refused_and_changes_nothing(database_url, tmp_path):
    right = key()
    jf = make(database_url, tmp_path / "data", right)
    create_smtp(jf)
    with jf.db.transaction() as s:
        before = [
            (p.key, p.value) for p in s.scalars(select(ConnectorParam).order_by(ConnectorParam.id))
        ]
    jf.close()
    with pytest.raises(SecretKeyError, match="does not match") as info:
        make(database_url, tmp_path / "data", key())
    assert "JACKFIELD_SECRET_KEY" in info.value.remediation
    jf = make(database_url, tmp_path / "data", right)
    with jf.db.transaction() as s:
        after = [
            (p.key, p.value) for p in s.scalars(select(ConnectorParam).order_by(ConnectorParam.id))
        ]
    assert after == before
    jf.close()


def test_rotation_with_environment_keys(database_url, tmp_path):
    old, new = key(), key()
    jf = make(database_url, tmp_path / "data", old)
    _, conn = create_smtp(jf)
    jf.close()
    # the new key alone cannot read the database ...
    with pytest.raises(SecretKeyError):
        make(database_url, tmp_path / "data", new)
    # ... with the old one as fallback it can, and rotation moves every secret over
    jf = make(database_url, tmp_path / "data", new, fallbacks=old)
    assert jf.rotate_keys() == 1
    jf.close()
    jf = make(database_url, tmp_path / "data", new)  # no fallback needed any more
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    jf.close()


def test_a_key_that_reads_the_check_but_not_every_secret_is_refused(database_url, tmp_path):
    """A secret written under the new key while the old one is still the database's
    check (before ``keys rotate``), then a start with the old key alone: before, it
    started and the connector's unit crashed on every start."""
    old, new = key(), key()
    jf = make(database_url, tmp_path / "data", old)
    who, conn = create_smtp(jf)
    jf.close()
    jf = make(database_url, tmp_path / "data", new, fallbacks=old)  # not rotated yet
    params = [{"key": "host", "value": "127.0.0.1"}, {"key": "password", "value": "pw-new"}]
    jf.connectors.update(who, conn["id"], params=params)  # sealed under the new key
    jf.close()
    with pytest.raises(SecretKeyError, match="sealed under master key") as info:
        make(database_url, tmp_path / "data", old)  # a rollback to the old key
    assert MasterKey.decode(new).key_id in str(info.value)
    assert "FALLBACKS" in info.value.remediation
    jf = make(database_url, tmp_path / "data", old, fallbacks=new)  # as the remedy says
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-new"
    jf.close()


def test_rotation_with_the_generated_key_file(sqlite_url, tmp_path):
    data = tmp_path / "data"
    jf = make(sqlite_url, data)
    _, conn = create_smtp(jf)
    old_key = (data / "secret.key").read_text()
    assert jf.rotate_keys() == 1
    assert (data / "secret.key").read_text() != old_key
    assert not (data / "secret.key.old").exists()
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    jf.close()
    jf = make(sqlite_url, data)
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    jf.close()


def test_a_running_server_follows_a_file_rotation_made_beside_it(database_url, tmp_path):
    """``jackfield keys rotate`` while ``serve`` runs (two processes, here two apps on
    one database and data dir). Before, the server kept the retired key: it could not
    read the re-encrypted secrets, and a secret it wrote next was sealed under a key
    whose file the rotation had deleted -- lost for good."""
    data = tmp_path / "data"
    server = make(database_url, data)
    who, conn = create_smtp(server)
    cli = make(database_url, data)
    assert cli.rotate_keys() == 1
    cli.close()
    assert server.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    params = [{"key": "host", "value": "127.0.0.1"}, {"key": "password", "value": "pw-2"}]
    server.connectors.update(who, conn["id"], params=params)
    server.close()
    later = make(database_url, data)  # the next start: only the new key file is there
    assert later.connectors.resolve(conn["id"])[2]["password"] == "pw-2"
    later.close()


def test_an_interrupted_file_rotation_is_finished_by_running_it_again(sqlite_url, tmp_path):
    data = tmp_path / "data"
    jf = make(sqlite_url, data)
    _, conn = create_smtp(jf)
    jf.close()
    # simulate a crash after the new key file was written but before re-encryption
    (data / "secret.key.old").write_text((data / "secret.key").read_text())
    (data / "secret.key").write_text(MasterKey.generate().encoded())
    jf = make(sqlite_url, data)  # old key still readable as a fallback
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    assert jf.rotate_keys() == 1
    assert not (data / "secret.key.old").exists()
    jf.close()


def test_a_rotation_killed_before_the_new_key_was_written_still_rotates(sqlite_url, tmp_path):
    """Killed after keeping the old key, before writing the new one: ``.old`` holds the
    current key. Running it again makes the new key (before, it re-encrypted under the
    old one and reported success)."""
    data = tmp_path / "data"
    jf = make(sqlite_url, data)
    _, conn = create_smtp(jf)
    jf.close()
    before = (data / "secret.key").read_text()
    (data / "secret.key.old").write_text(before)
    jf = make(sqlite_url, data)
    assert jf.rotate_keys() == 1
    assert (data / "secret.key").read_text() != before
    assert not (data / "secret.key.old").exists()
    jf.close()
    jf = make(sqlite_url, data)
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    jf.close()


def test_rotations_at_the_same_time_take_turns(sqlite_url, tmp_path):
    """Before, two ``keys rotate`` at once could each keep the other's new key as "old"
    and delete it: every secret was left sealed under a key no file held."""
    data = tmp_path / "data"
    first = make(sqlite_url, data)
    _, conn = create_smtp(first)
    first.close()
    rotators = [make(sqlite_url, data) for _ in range(4)]
    try:
        for _ in range(4):
            with ThreadPoolExecutor(len(rotators)) as pool:
                assert list(pool.map(lambda jf: jf.rotate_keys(), rotators)) == [1] * 4
    finally:
        for jf in rotators:
            jf.close()
    assert sorted(p.name for p in data.glob("secret.key*")) == ["secret.key", "secret.key.lock"]
    later = make(sqlite_url, data)  # only what is on disk now
    assert later.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    later.close()


def test_the_embedded_entry_point_takes_a_key_string(tmp_path):
    jf = Jackfield(database_url=f"sqlite:///{tmp_path}/app.db", secret_key=key(), data_dir=tmp_path)
    assert jf.accounts.list_orgs() == []
    assert not (tmp_path / "secret.key").exists()  # the given key is used, no file made
    jf.close()


def test_a_secret_written_during_a_rotation_is_not_overwritten_by_it(database_url, tmp_path):
    """An edit (or a refreshed OAuth token) committed while ``keys rotate`` ran was
    overwritten with the re-encryption of the value the rotation had read before it: a
    refresh token the provider had rotated away, refused for good afterwards."""
    import threading
    import time

    from sqlalchemy import update

    old, new = key(), key()
    jf = make(database_url, tmp_path / "data", old)
    _, conn = create_smtp(jf, password="pw-before")
    jf.close()
    jf = make(database_url, tmp_path / "data", new, fallbacks=old)
    sealed = jf.box.encrypt("pw-written-meanwhile", context=f"{conn['id']}:password")
    rotated: list[int] = []
    with jf.db.transaction() as s:  # the edit, under way: its row is locked
        s.execute(
            update(ConnectorParam)
            .where(ConnectorParam.connector_id == conn["id"], ConnectorParam.key == "password")
            .values(value=sealed)
        )
        rotation = threading.Thread(target=lambda: rotated.append(jf.rotate_keys()))
        rotation.start()
        time.sleep(0.5)  # the rotation reads the secrets meanwhile (or waits to)
    rotation.join(30)
    assert rotated and not rotation.is_alive()
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-written-meanwhile"
    jf.close()
    jf = make(database_url, tmp_path / "data", new)  # and everything is under the new key
    assert jf.connectors.resolve(conn["id"])[2]["password"] == "pw-written-meanwhile"
    jf.close()


@contextmanager
def rotating_once(jf, rotator, statement: str):
    """Run ``rotator.rotate_keys()`` in a thread, started while ``jf`` pauses at its
    first ``statement`` (holding the locks it took so far); yields the outcome, filled
    in once the block is left: the rotated count, or the error's repr."""
    import threading
    import time

    from sqlalchemy import event

    paused, outcome = threading.Event(), {}

    def pause(conn, cursor, sql, params, context, executemany):
        if sql.startswith(statement) and not paused.is_set():
            paused.set()
            time.sleep(0.5)

    def rotate():
        paused.wait(10)
        try:
            outcome["rotated"] = rotator.rotate_keys()
        except Exception as exc:  # (the test reports it)
            outcome["rotated"] = repr(exc)

    event.listen(jf.db.engine, "before_cursor_execute", pause)
    rotation = threading.Thread(target=rotate)
    rotation.start()
    try:
        yield outcome
    finally:
        rotation.join(30)
        event.remove(jf.db.engine, "before_cursor_execute", pause)


def test_a_rotation_and_an_edit_removing_a_secret_do_not_deadlock(database_url, tmp_path):
    """An edit's flush UPDATEs a changed secret before it DELETEs a removed one; the
    rotation locked the secrets in id order, so they waited on each other (PostgreSQL
    killed one: a failed rotation or a 500). Both now take the connector's row first."""
    from jackfield.service import Principal

    old, new = key(), key()
    jf = make(database_url, tmp_path / "data", old)
    who = Principal.operator(jf.accounts.create_org("acme")["id"])
    base = {"key": "base_url", "value": "https://api.example.com"}
    created = jf.connectors.create(
        who,
        name="api",
        category="http",
        provider_type="http",
        params=[
            base,
            {"key": "auth.mode", "value": "basic"},
            {"key": "auth.username", "value": "u"},
            {"key": "auth.password", "value": "pw-1"},  # the lower id
            {"key": "auth.token", "value": "tok-1"},  # the higher id
        ],
    )
    rotator = make(database_url, tmp_path / "data", new, fallbacks=old)
    bearer = [
        base,
        {"key": "auth.mode", "value": "bearer"},
        {"key": "auth.token", "value": "tok-2"},
    ]
    with rotating_once(jf, rotator, "DELETE FROM connector_params") as outcome:
        jf.connectors.update(who, created["id"], params=bearer)
    assert isinstance(outcome.get("rotated"), int), outcome
    assert rotator.connectors.resolve(created["id"])[2]["auth"]["token"] == "tok-2"
    jf.close()
    rotator.close()


def test_a_rotation_and_making_another_connector_the_default_do_not_deadlock(
    database_url, tmp_path
):
    """Making connector A the default unsets B: the edit held A and waited for B, while the
    rotation, locking connectors in id order, held B and waited for A (PostgreSQL)."""
    from jackfield.service import Principal

    old, new = key(), key()
    jf = make(database_url, tmp_path / "data", old)
    who = Principal.operator(jf.accounts.create_org("acme")["id"])

    def http(name: str) -> str:
        params = [
            {"key": "base_url", "value": "https://api.example.com"},
            {"key": "auth.mode", "value": "bearer"},
            {"key": "auth.token", "value": f"tok-{name}"},
        ]
        return jf.connectors.create(
            who, name=name, category="http", provider_type="http", params=params
        )["id"]

    low, high = sorted([http("one"), http("two")])
    jf.connectors.update(who, low, is_default=True)
    rotator = make(database_url, tmp_path / "data", new, fallbacks=old)
    with rotating_once(jf, rotator, "UPDATE connectors SET is_default") as outcome:
        assert jf.connectors.update(who, high, is_default=True)["is_default"] is True
    assert isinstance(outcome.get("rotated"), int), outcome
    jf.close()
    rotator.close()


def test_a_relative_data_dir_stays_where_it_was_when_the_app_changes_directory(
    database_url, tmp_path, monkeypatch
):
    """Before: a relative ``data_dir`` followed the process's current directory, so an
    app that called ``os.chdir()`` got a second key file there and new secrets sealed
    under it -- the app could not start again from its own directory (``SecretKeyError``)
    -- and its built-in storage moved too."""
    home, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(home)
    jf = make(database_url, "data")
    monkeypatch.chdir(elsewhere)
    _, conn = create_smtp(jf)
    org = conn["organization_id"]
    jf.default("storage", org).instantiate().put("f.txt", b"x")
    jf.close()
    assert list(elsewhere.iterdir()) == []
    assert (home / "data" / "storage" / org / "f.txt").read_bytes() == b"x"

    monkeypatch.chdir(home)
    again = make(database_url, "data")
    assert again.connectors.resolve(conn["id"])[2]["password"] == "pw-canary-1"
    again.close()
