"""Alembic environment: run by ``jackfield db upgrade`` and on ``serve`` start."""

from alembic import context

from jackfield.store.models import Base
from jackfield.store.tables import load_all_models

load_all_models()
config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through jackfield.store.migrate.upgrade()")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
