"""Master key check at start-up and ``keys rotate`` (re-encrypt every secret)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..secrets import SecretBox
from ..store import ConnectorParam, Database, Meta
from .params import ParamCodec

KEY_CHECK = "key_check"


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


def reencrypt_all(db: Database, codec: ParamCodec) -> int:
    """Re-encrypt every secret param (and the key check) under the current key.

    One transaction: either every secret moves to the new key or none does. Returns the
    number of values re-encrypted.
    """
    box = codec.box
    obsolete: list[str] = []
    count = 0
    with db.transaction() as s:
        for row in s.scalars(select(ConnectorParam).where(ConnectorParam.is_secret.is_(True))):
            changed = codec.reencrypt(row.connector_id, row)
            if isinstance(changed, str):
                obsolete.append(changed)
            count += bool(changed)
        check = s.get(Meta, KEY_CHECK)
        if check is None:
            s.add(Meta(key=KEY_CHECK, value=box.make_check()))
        elif box.needs_rotation(check.value):
            box.verify_check(check.value)
            check.value = box.make_check()
    for ref in obsolete:
        codec.files.delete(ref)
    return count
