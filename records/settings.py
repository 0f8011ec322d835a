"""Where the store lives when nothing says otherwise: an SQLite file under var/ of the checkout."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_database_url() -> str:
    path = PROJECT_ROOT / "var" / "xinqiao.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{path}"
