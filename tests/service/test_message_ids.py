"""Generated envelope ids are canonical ULIDs: the time they were made, 80 random bits."""

from __future__ import annotations

import time
from collections import Counter

from ulid import ULID

from jackfield.service.messages import new_ulid, parse_envelope_id


def test_new_ids_are_canonical_ulids_of_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    ids = [new_ulid() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for envelope_id in ids:
        parsed = ULID.from_str(envelope_id)
        assert str(parsed) == envelope_id  # canonical: parses back to the same text
        assert before <= parsed.milliseconds <= after
    time.sleep(0.002)
    assert ULID.from_str(new_ulid()).milliseconds > ULID.from_str(ids[-1]).milliseconds


def test_the_random_part_uses_the_whole_alphabet_evenly():
    counts = Counter("".join(new_ulid()[10:] for _ in range(10_000)))
    assert set(counts) == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    expected = 10_000 * 16 / 32
    assert all(abs(n - expected) < 0.1 * expected for n in counts.values())


def test_a_missing_envelope_id_gets_a_new_one():
    made = [parse_envelope_id(None), parse_envelope_id("")]
    assert made[0] != made[1]
    assert all(str(ULID.from_str(envelope_id)) == envelope_id for envelope_id in made)
