import pytest
from sqlalchemy import select

from jackfield.kernel import AuthenticationError, ConflictError, ConnectorConfigError
from jackfield.service import Role
from jackfield.store import ApiToken, User


def test_users_tokens_and_authentication(jf):
    user, token = jf.accounts.create_user(
        "Ann@Example.com", "acme", "admin", password="long-password", with_token=True
    )
    assert user["email"] == "ann@example.com" and user["organization"] == "acme"
    principal = jf.accounts.authenticate_token(token)
    assert principal.role is Role.ADMIN and principal.organization_id == user["organization_id"]
    assert (
        jf.accounts.authenticate_password("ann@example.com", "long-password").user_id == user["id"]
    )
    with pytest.raises(AuthenticationError):
        jf.accounts.authenticate_password("ann@example.com", "wrong-password")
    with pytest.raises(AuthenticationError):
        jf.accounts.authenticate_token(token + "x")
    second = jf.accounts.create_token("ann@example.com", "ci")
    assert jf.accounts.authenticate_token(second).actor == "ann@example.com"


def test_passwords_and_tokens_are_stored_hashed(jf):
    _, token = jf.accounts.create_user(
        "bob@example.com", "acme", "user", password="hunter2-hunter2", with_token=True
    )
    with jf.db.transaction() as s:
        user = s.scalar(select(User).where(User.email == "bob@example.com"))
        hashes = list(s.scalars(select(ApiToken.token_hash)))
    assert "hunter2" not in user.password_hash and user.password_hash.startswith("scrypt$")
    assert token not in hashes and len(hashes) == 1


@pytest.mark.parametrize(
    ("args", "match", "remediation"),
    [
        (("not-an-email", "acme", "admin"), "not an email", "like ann@example.com"),
        (("a@b.c", "acme", "owner"), "role must be", "Correct the value"),
        (("a@b.c", "acme", "admin", "short"), "at least 8", "longer password"),
        (("a@b.c", " ", "admin"), "organization name must be", "Correct the value"),
    ],
)
def test_bad_user_input(jf, args, match, remediation):
    email, org, role, *password = args
    with pytest.raises(ConnectorConfigError, match=match) as raised:
        jf.accounts.create_user(email, org, role, password=password[0] if password else None)
    # a user error (422 / exit 1) whose hint is about accounts, not a connector's params
    assert remediation in raised.value.remediation
    assert "connector" not in raised.value.remediation
    assert jf.accounts.list_orgs() == []


def test_an_unknown_user_or_organization_is_a_user_error_about_accounts(jf):
    with pytest.raises(ConnectorConfigError, match="no user 'nobody@x\\.io'") as raised:
        jf.accounts.create_token("nobody@x.io")
    assert "connector" not in raised.value.remediation and "spelling" in raised.value.remediation
    with pytest.raises(ConnectorConfigError, match="no organization 'nope'") as raised:
        jf.accounts.org_id("nope")
    assert "jackfield orgs create" in raised.value.remediation


def test_a_short_bootstrap_password_names_its_setting(jf):
    with pytest.raises(ConnectorConfigError, match="JACKFIELD_ADMIN_PASSWORD has 5 char") as raised:
        jf.accounts.bootstrap_admin("short")
    assert "unset it" in raised.value.remediation
    assert "short" not in str(raised.value)  # the value itself is never echoed
    assert jf.accounts.list_orgs() == []


def test_duplicates_are_conflicts(jf):
    jf.accounts.create_org("acme")
    with pytest.raises(ConflictError):
        jf.accounts.create_org("acme")
    jf.accounts.create_user("a@b.c", "acme", "user")
    with pytest.raises(ConflictError):
        jf.accounts.create_user("A@b.c", "acme", "user")


def test_bootstrap_admin_only_on_an_empty_database(jf):
    admin = jf.accounts.bootstrap_admin(None)
    assert admin is not None and admin.generated and len(admin.password) >= 12
    assert jf.accounts.authenticate_password(admin.email, admin.password).role is Role.ADMIN
    assert jf.accounts.bootstrap_admin("another-password") is None


def test_parallel_password_guesses_get_no_more_tries_than_sequential_ones(jf):
    """40 guesses sent at once: before, all of them had their password checked (each
    passed the throttle while the first was still hashing); now no more than 5 do, the
    others are refused at once, as they would be one after the other."""
    import threading

    from jackfield.service.login_throttle import TooManyLoginAttempts

    jf.accounts.create_user("eve@example.com", "acme", "admin", password="long-password")
    start = threading.Barrier(40)
    answers: list[str] = []

    def guess(n: int) -> None:
        start.wait()
        try:
            jf.accounts.authenticate_password("eve@example.com", f"guess-{n}")
        except TooManyLoginAttempts:
            answers.append("refused")
        except AuthenticationError:
            answers.append("checked")

    threads = [threading.Thread(target=guess, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 40
    assert answers.count("checked") <= 5
    with pytest.raises(TooManyLoginAttempts):  # and the email waits now
        jf.accounts.authenticate_password("eve@example.com", "long-password")


def test_no_token_for_a_deactivated_user(jf):
    """A token made for a deactivated user would be refused on every request (401): it
    is not made, and the user keeps no token."""
    user, _ = jf.accounts.create_user("gone@example.com", "acme", "admin")
    jf.accounts.deactivate_user("gone@example.com")
    with pytest.raises(ConflictError, match=r"'gone@example\.com' is deactivated") as raised:
        jf.accounts.create_token("Gone@example.com", "ci")
    assert "active user" in raised.value.remediation
    with jf.db.snapshot() as s:
        assert s.scalars(select(ApiToken).where(ApiToken.user_id == user["id"])).all() == []


def test_a_login_costs_one_scrypt_whether_or_not_the_email_has_an_account(jf, monkeypatch):
    """Before: an unknown email (or an inactive user, or one without a password) was
    answered without hashing, ~55 ms against ~150-200 ms, so timing logins told which
    emails have accounts. Counted, not timed: the same scrypt work on every path."""
    import hashlib

    jf.accounts.create_user("known@example.com", "acme", "user", password="long-password")
    jf.accounts.create_user("gone@example.com", "acme", "user", password="long-password")
    jf.accounts.deactivate_user("gone@example.com")
    jf.accounts.create_user("tokens-only@example.com", "acme", "user")
    real_scrypt, costs = hashlib.scrypt, []

    def counting_scrypt(password: bytes, **params: int) -> bytes:
        costs.append((params["n"], params["r"], params["p"]))
        return real_scrypt(password, **params)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    with pytest.raises(AuthenticationError):  # makes the fixed hash, once
        jf.accounts.authenticate_password("nobody@example.com", "warm-up")
    seen: dict[str, list[tuple[int, int, int]]] = {}
    for email in ("known", "nobody", "gone", "tokens-only"):
        costs.clear()
        with pytest.raises(AuthenticationError):
            jf.accounts.authenticate_password(f"{email}@example.com", "wrong-password")
        seen[email] = list(costs)
    assert seen["nobody"] == seen["gone"] == seen["tokens-only"] == seen["known"]
    assert len(seen["known"]) == 1
