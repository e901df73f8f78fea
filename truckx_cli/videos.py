"""``truckx videos``: list a device's videos; download one with a progress bar, resuming with ``Range``."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any, Optional

import httpx
import typer
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from .client import EXIT_ERROR, EXIT_UNREACHABLE, EXIT_USAGE, Client, CliError, check_imei, client_of, seg
from .common import Group, command, view_of
from .output import (ALL_OPT, CSV_OPT, CURSOR_OPT, JSON_OPT, LIMIT_OPT, Col, choose, human_size, info, list_paged,
                     print_json, stderr)

app = typer.Typer(help="List and download dashcam videos.", no_args_is_help=True, cls=Group)

COLUMNS = [Col("Name", "name", cut=None, priority=0),
           Col("Size", lambda v: human_size(v.get("size")), cut=None, priority=2, justify="right"),
           Col("Complete", "complete", cut=None, priority=3), Col("Uploaded", "uploaded_at", time=True, priority=1),
           Col("SHA-256", lambda v: (v.get("sha256") or "")[:12] + ("…" if v.get("sha256") else ""), cut=None,
               priority=6),
           Col("Alarms", lambda v: len(v.get("alarm_ids") or []), cut=None, priority=4, justify="right")]
FLEET_COLUMNS = [Col("Device", "imei", cut=None, priority=0), *COLUMNS]
IMEI_ARG = typer.Argument(..., metavar="IMEI", help="The device.")
CHUNK = 256 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")


def _base(imei: str) -> str:
    return f"/api/v1/admin/devices/{seg(imei, 'IMEI')}/videos"


@command(app, "list", example=["truckx videos list", "truckx videos list 356938035643809",
                               "truckx videos list 356938035643809 --all --json"])
def list_(ctx: typer.Context,
          imei: Optional[str] = typer.Argument(None, metavar="[IMEI]", help="A device's IMEI; without it, every "
                                               "device's videos, newest first."),
          limit: Optional[int] = LIMIT_OPT, cursor: Optional[str] = CURSOR_OPT, all_: bool = ALL_OPT,
          as_json: bool = JSON_OPT, as_csv: bool = CSV_OPT) -> None:
    """List a device's videos, or every device's."""
    fmt = choose(as_json, as_csv)
    path, columns = ((_base(check_imei(imei)), COLUMNS) if imei is not None
                     else ("/api/v1/admin/videos", FLEET_COLUMNS))
    list_paged(client_of(ctx), path, [], columns, limit=limit, cursor=cursor, follow=all_, fmt=fmt,
               view=view_of(ctx))


def _sha_from_headers(headers: Any) -> str | None:
    for name in ("X-Content-SHA256", "ETag"):
        value = (headers.get(name) or "").strip()
        if value.startswith("W/"):
            value = value[2:]
        value = value.strip('"').lower()
        if _HEX64.fullmatch(value):
            return value
    return None


def _sha_from_listing(client: Client, imei: str, name: str) -> str | None:
    for page, _next in client.pages(_base(imei), [], limit=1000, cursor=None, follow=True):
        for video in page:
            if video.get("name") == name:
                sha = video.get("sha256")
                return sha.lower() if isinstance(sha, str) else None
    return None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@command(app, example=["truckx videos download 356938035643809 front-0001.mp4",
                       "truckx videos download 356938035643809 front-0001.mp4 -o evidence/"], times=False)
def download(ctx: typer.Context, imei: str = IMEI_ARG, name: str = typer.Argument(..., metavar="NAME"),
             output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH", help="File or directory to save to "
                                                   "(default: NAME in the current directory)."),
             as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
             quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar.")) -> None:
    """Download a video. An interrupted download leaves PATH.part; running again resumes it with Range,
    and the result is checked against the server's SHA-256."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise CliError(f"{name!r} is not a video file name ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}})", EXIT_USAGE)
    dest = output if output is not None else Path(name)
    if dest.is_dir():
        dest = dest / name
    part = dest.with_name(dest.name + ".part")
    client = client_of(ctx)
    path = f"{_base(imei)}/{seg(name, 'NAME')}"

    offset = part.stat().st_size if part.exists() else 0
    resumed_from = offset
    expected: str | None = None
    total: int | None = None
    for _attempt in range(2):
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with client.stream("GET", path, headers=headers) as response:
            expected = _sha_from_headers(response.headers)
            if response.status_code == 416:  # nothing after offset: complete, or the partial is bogus
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                size = int(match.group(3)) if match and match.group(3) != "*" else None
                if size is not None and size == offset:
                    total = size
                    break
                info(f"the partial file {part} does not fit the video; starting over")
                offset = resumed_from = 0
                part.unlink(missing_ok=True)
                continue
            if response.status_code == 206:
                match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
                if not match or match.group(1) is None or int(match.group(1)) != offset:
                    raise CliError(f"the server answered the range request for {name} with "
                                   f"{response.headers.get('Content-Range')!r}; not resuming")
                total = int(match.group(3)) if match.group(3) != "*" else None
                mode = "ab"
            else:  # 200: the whole file (a server without Range support, or no partial file)
                offset = resumed_from = 0
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            if resumed_from:
                info(f"resuming {name} at byte {resumed_from}" + (f" of {total}" if total else ""))
            _receive(response, part, mode, offset, total, name, quiet)
        break
    else:
        raise CliError(f"could not download {name}")

    size = part.stat().st_size
    if total is not None and size != total:
        raise CliError(f"download of {name} incomplete ({size} of {total} bytes); run the same command "
                       "again to resume", EXIT_ERROR)
    if expected is None:
        expected = _sha_from_listing(client, imei, name)
    actual = _file_sha256(part)
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)
        raise CliError(f"SHA-256 mismatch for {name}: got {actual}, the server says {expected}; "
                       "the partial file was removed, run the command again", EXIT_ERROR)
    os.replace(part, dest)
    result = {"path": str(dest), "size": size, "sha256": actual, "verified": expected is not None,
              "resumed_from": resumed_from}
    if as_json:
        print_json(result)
    else:
        info(f"saved {dest} ({human_size(size)}, sha256 {actual}"
             + (", verified" if expected else ", not verified: the server gave no checksum") + ")")


def _receive(response: Any, part: Path, mode: str, offset: int, total: int | None, name: str, quiet: bool) -> None:
    progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        TimeRemainingColumn(), console=stderr(), disable=quiet, transient=False)
    try:
        with progress, open(part, mode) as fh:
            task = progress.add_task(name, total=total, completed=offset)
            for chunk in response.iter_bytes(CHUNK):
                fh.write(chunk)
                progress.update(task, advance=len(chunk))
    except KeyboardInterrupt:
        info(f"\ninterrupted; the partial download is kept in {part}; run the same command again to resume")
        raise typer.Exit(130) from None
    except httpx.HTTPError as exc:
        raise CliError(f"download of {name} interrupted ({exc or type(exc).__name__}); the partial download "
                       f"is kept in {part}, run the same command again to resume", EXIT_UNREACHABLE) from None


@command(app, example=["truckx videos delete 356938035643809 front-0001.mp4",
                       "truckx videos delete 356938035643809 front-0001.mp4 --force --yes"], times=False)
def delete(ctx: typer.Context, imei: str = IMEI_ARG, name: str = typer.Argument(..., metavar="NAME"),
           force: bool = typer.Option(False, "--force", help="Delete it even when it is evidence (an alarm that "
                                                            "is not cleared names it)."),
           yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete a video (admin).

    Its file, any unfinished upload of it and its entry go. A video that an alarm not yet cleared names is
    evidence: refused unless --force."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise CliError(f"{name!r} is not a video file name ([A-Za-z0-9][A-Za-z0-9._-]{{0,127}})", EXIT_USAGE)
    imei = check_imei(imei)
    what = "evidence " if force else ""
    if not yes and not typer.confirm(f"Delete {what}video {name} of {imei}?", default=False, err=True):
        raise CliError("nothing deleted (not confirmed; --yes skips the question)", EXIT_ERROR)
    try:
        client_of(ctx).request("DELETE", f"{_base(imei)}/{seg(name, 'NAME')}",
                               params=[("force", "true")] if force else None, what=f"delete {name}")
    except CliError as exc:
        alarm_ids = (exc.detail or {}).get("alarm_ids")
        if alarm_ids:
            raise CliError(f"{name} is evidence: alarm{'s' if len(alarm_ids) > 1 else ''} {', '.join(alarm_ids)} "
                           "not cleared; clear them first, or use --force", exc.code) from None
        raise
    info(f"deleted {name} of {imei}")
