"""What the real ``jackfield`` command tells an operator whose key settings are wrong:
one line, exit 1, and a remedy that fits the setting."""

import base64
import os

from .test_serve import env, run  # noqa: F401 - the fixture and runner of the serve tests


def test_a_bad_fallback_key_says_it_must_be_an_earlier_key_not_a_new_one(env):  # noqa: F811
    good = base64.urlsafe_b64encode(os.urandom(32)).decode()
    proc = run({**env, "JACKFIELD_SECRET_KEY_FALLBACKS": f"{good},garbage"}, "orgs", "create", "x")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: JACKFIELD_SECRET_KEY_FALLBACKS entry 2 of 2 is not base64 of 32 bytes (Each"
        " fallback must be an earlier JACKFIELD_SECRET_KEY (base64 of 32 bytes), the one"
        " older secrets were encrypted with; separate several with commas)"
    ]
    # (before, it said "Generate one with: python -c ...": a new key decrypts nothing)
    assert "Generate" not in proc.stderr and "garbage" not in proc.stderr

    # the current key itself may still be generated anew
    proc = run({**env, "JACKFIELD_SECRET_KEY": "short"}, "orgs", "create", "x")
    assert proc.returncode == 1 and "Generate one with" in proc.stderr
