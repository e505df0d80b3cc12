"""Running alembic migrations from inside the server and the ``vtai migrate`` command."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS = Path(__file__).with_name("migrations")


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Leave out what migration 0004 made by hand beside tables.py (the lexical index of
    vector store chunks: SQLite's FTS5 tables, PostgreSQL's tsv column), which autogenerate
    would otherwise drop."""
    if type_ == "table":
        return not (name or "").startswith("vector_store_chunks_fts")
    return not (type_ == "column" and name == "tsv")


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


def upgrade(connection: Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
