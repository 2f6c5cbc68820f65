"""``--param`` given twice with one key is refused, as REST refuses it (one rule, in the
service)."""

from .test_cli_tour import any_db_cli, user_error

__all__ = ["any_db_cli"]  # the fixture, imported for this test


def test_a_param_given_twice_is_a_one_line_error(any_db_cli):
    """Before, the last ``--param`` silently won (and REST differed from
    ``unflatten_params``)."""
    cli = any_db_cli
    cli.run("orgs", "create", "acme")
    proc = cli.run(
        "connectors", "create", "--org", "acme", "--name", "files", "--category", "storage",
        "--provider", "local_fs", "--param", "root=/tmp/a", "--param", "root=/tmp/b",
        expect=1,
    )  # fmt: skip
    user_error(proc, "root", "more than once")
    assert cli.json("connectors", "list")["items"] == []
