"""Group commit: concurrent writers share transactions; one failure stays its own."""

import threading

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from jackfield.store import Organization
from jackfield.store.group_commit import GroupCommitter


def test_concurrent_writes_commit_together_and_failures_stay_isolated(jf):
    committer = GroupCommitter(jf.db)
    results, errors = [], []

    def write(i):
        name = "dup" if i % 10 == 0 else f"org-{i}"
        try:
            results.append(committer.submit(lambda s: s.add(Organization(name=name)) or i))
        except IntegrityError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(100)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    committer.close()
    with jf.db.transaction() as s:
        names = set(s.scalars(select(Organization.name)))
        count = s.scalar(select(func.count()).select_from(Organization))
    # ten writers wanted the name "dup": exactly one got it, nine got their own error
    assert len(errors) == 9 and len(results) == 91
    assert "dup" in names and count == 91


def test_an_error_inside_fn_reaches_its_caller(jf):
    committer = GroupCommitter(jf.db)

    def boom(session):
        raise ValueError("bad write")

    with pytest.raises(ValueError, match="bad write"):
        committer.submit(boom)
    assert committer.submit(lambda s: 42) == 42
    committer.close()
