"""Which stores the end-to-end tests run on.

By default the embedded default (SQLite files in the test's tmp dir). ``TRUCKX_TEST_SQL_URL`` (a MySQL /
MariaDB URL) and ``TRUCKX_TEST_LOCATIONS_URL`` (a MongoDB URL) point the server fixture elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def backend_overrides(tmp_path: Path) -> dict[str, Any]:
    return {}
