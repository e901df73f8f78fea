"""Apply the Alembic migrations in ``sql/`` to the relational store."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from . import privacy
from .storage.sql import sync_url


def script_location() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):  # installed package data, then source checkout
        if (candidate / "env.py").exists():
            return candidate
    raise FileNotFoundError("cannot find the sql/ migrations folder")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location()))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Blocking; run it in a thread from async code."""
    path = privacy.sqlite_path(url)
    if path is not None:
        privacy.private_file(path)  # before SQLite creates it (its journals take the file's mode)
    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine, pool

    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
