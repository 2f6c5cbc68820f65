"""A category name the real ``jackfield`` command does not know is a user error wherever
it is given, not an empty listing."""

import json

from .test_serve import env, run  # noqa: F401 - the fixture and runner of the serve tests


def test_providers_list_of_an_unknown_category_is_a_user_error(env):  # noqa: F811
    assert run(env, "db", "upgrade").returncode == 0  # (a new database adds a note)
    proc = run(env, "providers", "list", "--category", "nope", "--json")
    # before: exit 0 and {"items": []}, while connectors create said "unknown category"
    assert proc.returncode == 1 and proc.stdout == ""
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: unknown category 'nope' (category: known categories: ")
    assert "email, http, messaging, queue, storage" in line

    known = run(env, "providers", "list", "--category", "email", "--json")
    assert known.returncode == 0, known.stderr
    assert [p["provider_type"] for p in json.loads(known.stdout)["items"]] == ["smtp"]
