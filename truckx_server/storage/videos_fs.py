"""Video objects on a directory tree ``<root>/<imei>/<name>``. (Being filled in: see issue 2, item 7.)"""

from __future__ import annotations

import asyncio
from pathlib import Path


class FsVideoStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def ping(self) -> None:
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
