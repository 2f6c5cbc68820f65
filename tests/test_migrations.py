"""The migrations create exactly the schema the models describe, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from jackfield.store import Base, create_db_engine, is_current, upgrade
from jackfield.store.tables import load_all_models


def test_migrations_match_the_models(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    upgrade(engine)  # idempotent
    assert is_current(engine)
    load_all_models()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []
