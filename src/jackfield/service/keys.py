"""Master key check at start-up and ``keys rotate`` (re-encrypt every secret)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ..secrets import SecretBox, SecretKeyError
from ..secrets.cipher import PREFIX
from ..store import Connector, ConnectorParam, Database, Meta, utcnow
from ..store.models_oauth import OAuthState
from .oauth import state_context
from .params import ParamCodec

KEY_CHECK = "key_check"
KEY_STAMP_LENGTH = len(PREFIX) + 1 + 8  # a sealed value's "jf1:<key id>" (8 hex digits)


def check_master_key(db: Database, box: SecretBox) -> None:
    """Refuse to run with a key that cannot read this database's secrets.

    The first start records an encrypted check value; later starts must decrypt it. Of
    nodes starting together on a new database, all find no value and the first to
    commit records its own: the others then verify against that one (same key: they
    start; another key: refused).
    """
    try:
        with db.transaction() as s:
            row = s.get(Meta, KEY_CHECK)
            if row is None:
                s.add(Meta(key=KEY_CHECK, value=box.make_check()))
                return
            box.verify_check(row.value)
    except IntegrityError:
        with db.snapshot() as s:
            recorded = s.get(Meta, KEY_CHECK)
            assert recorded is not None  # the row whose insert ours collided with
            box.verify_check(recorded.value)
    _check_every_secret_is_readable(db, box)


def _check_every_secret_is_readable(db: Database, box: SecretBox) -> None:
    """The check value is re-encrypted last by a rotation; a key that reads it may still
    miss the key of some secrets (a rollback to the old key, a fallback dropped too
    early). Their units would crash on every start: refuse now, naming the keys."""
    with db.snapshot() as s:
        stamps = s.scalars(
            select(func.substr(ConnectorParam.value, 1, KEY_STAMP_LENGTH))
            .where(ConnectorParam.is_secret.is_(True))
            .distinct()
        )
        key_ids = {stamp.split(":")[1] for stamp in stamps if SecretBox.is_encrypted(stamp)}
    missing = sorted(key_id for key_id in key_ids if box.keyring.find(key_id) is None)
    if missing:
        raise SecretKeyError(
            f"some secrets are sealed under master key(s) {', '.join(missing)}, which the"
            " configured keys do not include",
            remediation="Add the key they were written with to JACKFIELD_SECRET_KEY_FALLBACKS"
            " (or restore DATA_DIR/secret.key.old), then run 'jackfield keys rotate'.",
        )


def reencrypt_all(db: Database, codec: ParamCodec) -> int:
    """Re-encrypt every secret param, the PKCE verifier of every pending OAuth state, and
    the key check, under the current key.

    One transaction: either every secret moves to the new key or none does. The rows are
    locked as they are read (PostgreSQL; SQLite's one writer waits anyway), so a secret
    written meanwhile -- an admin's edit, a refreshed OAuth token -- waits for the
    rotation and lands on top of it: read without the lock, it was overwritten with the
    re-encryption of its old value (a rotated-away refresh token, which the provider
    then refused for good). Returns the number of values re-encrypted.
    """
    box = codec.box
    obsolete: list[str] = []
    count = 0
    with db.transaction() as s:
        holders = select(ConnectorParam.connector_id).where(ConnectorParam.is_secret.is_(True))
        # each connector's row first, then its params: the order of edits and token
        # refreshes (``ConnectorService._load(lock=True)``), so none deadlocks the rotation
        s.execute(
            select(Connector.id)
            .where(Connector.id.in_(holders))
            .order_by(Connector.id)
            .with_for_update(key_share=True)
        ).all()
        secrets = (
            select(ConnectorParam)
            .where(ConnectorParam.is_secret.is_(True))
            .order_by(ConnectorParam.id)
            .with_for_update()
        )
        for row in s.scalars(secrets):
            changed = codec.reencrypt(row.connector_id, row)
            if isinstance(changed, str):
                obsolete.append(changed)
            count += bool(changed)
        pending = (
            select(OAuthState)
            .where(OAuthState.used_at.is_(None), OAuthState.expires_at > utcnow())
            .with_for_update()
        )
        for state in s.scalars(pending):  # a Connect under way completes after the rotation
            if box.needs_rotation(state.code_verifier):
                context = state_context(state.nonce)
                verifier = box.decrypt(state.code_verifier, context=context)
                state.code_verifier = box.encrypt(verifier, context=context)
                count += 1
        check = s.get(Meta, KEY_CHECK)
        if check is None:
            s.add(Meta(key=KEY_CHECK, value=box.make_check()))
        elif box.needs_rotation(check.value):
            box.verify_check(check.value)
            check.value = box.make_check()
    for ref in obsolete:
        codec.files.delete(ref)
    return count
