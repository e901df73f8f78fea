"""Private data on disk: what the server keeps (password hashes, every location, every video, its
secrets) is readable by the server's user only. Directories are created 0700 and files 0600 whatever the
umask (``main`` also sets the process umask to 077, for files that libraries create); SQLite creates its
``-wal`` and ``-shm`` files with the mode of the database file, so the database file is created first,
0600. A data directory left readable by an older version is tightened at start (:func:`tighten`).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Iterable

log = logging.getLogger("truckx.privacy")

DIR_MODE = 0o700
FILE_MODE = 0o600
#: what SQLite keeps beside a database file
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def private_dir(path: Path) -> None:
    """``mkdir -p`` with every directory it creates 0700 (``Path.mkdir(parents=True)`` gives parents
    the umask's mode)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(d, DIR_MODE)  # in case the umask took more away than 077 does


def private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist (an empty file is a valid new SQLite
    database); its directory is created private."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def sqlite_path(url: str) -> Path | None:
    """The file of an ``sqlite:///`` URL (None for other URLs and in-memory databases)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _tighten_one(path: Path) -> bool:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False  # never follow a link out of the tree
    want = DIR_MODE if stat.S_ISDIR(st.st_mode) else FILE_MODE
    if stat.S_IMODE(st.st_mode) & ~want:
        os.chmod(path, stat.S_IMODE(st.st_mode) & want)
        return True
    return False


def tighten(data_dir: Path, trees: Iterable[Path] = (), files: Iterable[Path] = ()) -> int:
    """Take group and other permissions away from the data directory itself, every directory and file
    under ``trees`` (the video tree: all ours), and ``files`` (the SQLite databases with their journals,
    the secrets). Other files in the data directory are left alone, in case it was pointed at a shared
    directory. Returns how many were changed; logs it once when any was."""
    changed = 0
    if data_dir.is_dir():
        changed += _tighten_one(data_dir)
    for tree in trees:
        if not tree.is_dir():
            continue
        changed += _tighten_one(tree)
        for root, dirs, names in os.walk(tree):
            for name in dirs + names:
                changed += _tighten_one(Path(root) / name)
    for f in files:
        changed += _tighten_one(f)
    if changed:
        log.warning("tightened the permissions of %d paths of the data directory (now 0700 directories, "
                    "0600 files): other users could read them (left by an older version or another umask)",
                    changed)
    return changed


def sqlite_files(url: str) -> list[Path]:
    """A SQLite database's file with the journals SQLite keeps beside it."""
    path = sqlite_path(url)
    return [] if path is None else [Path(f"{path}{suffix}") for suffix in SQLITE_SUFFIXES]
