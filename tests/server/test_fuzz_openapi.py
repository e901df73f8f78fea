"""Schemathesis over the served OpenAPI document, against a real ``truckx-server`` process on each store
combination: every operation, with a token of the role it needs (admin, or the device's for the device
plane) and without one, every default check (no 5xx, status codes, content types, headers and bodies as
documented, schema-valid requests accepted, schema-invalid ones refused, 401 without auth, ``Allow`` on
405, ...). The run fails on any check's failure and on any traceback in the server's log.

The document is as strict as the server wherever JSON Schema can say it (patterns, lengths, ranges,
enumerations). What it cannot say is written in it as a named ``format`` and a description; this test
teaches the generator those rules, as a client who read the description would:

- ``imei``: 15 digits whose last is the Luhn check digit;
- ``device-time``: an RFC 3339 time from 2000-01-01 up to five minutes from now;
- ``bbox``: ``minLon,minLat,maxLon,maxLat`` with minLat <= maxLat;
- a ``cursor`` is the ``next_cursor`` of the list's previous page: valid requests carry a real one;
- ``request_video``'s ``to`` is after its ``from``; a bulk registration names each IMEI once; an
  upload's ``X-Content-SHA256`` is the hash of its body;
- ``?wait=`` may hold a request up to 60 s for a command no device answers: valid requests wait at most 1 s;
- ``geofence-geometry``: a polygon's rings are closed and valid by OGC rules (no self-intersection, some
  area, less than 180 degrees wide, at most 10,000 positions): a valid request's polygon that is not gets
  a small square at its first position instead.

``TRUCKX_FUZZ_EXAMPLES`` (default 8) sets the examples per operation of the fuzzing phase; the seed is
fixed, so a run is reproducible (``TRUCKX_FUZZ_SEED`` to explore others).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
from typing import Any, Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.fuzz_support import Seeded, backend_args, combination_params, seed, start_server, tracebacks
from tests.support import new_imei
from truckx_server import openapi
from truckx_server.domain.geofences import parse_geometry
from truckx_server.errors import InvalidArgument
from truckx_server.models import make_imei

EXAMPLES = int(os.environ.get("TRUCKX_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("TRUCKX_FUZZ_SEED", "20261129"))
#: registered before the server starts, so that the ``imei`` strategy can name them
SEED_IMEIS = [new_imei() for _ in range(3)]


def _imeis() -> st.SearchStrategy[str]:
    random_valid = st.from_regex(r"\A[0-9]{14}\Z").map(make_imei)
    return st.one_of(st.sampled_from(SEED_IMEIS), random_valid)


def _device_times() -> st.SearchStrategy[str]:
    earliest = dt.datetime(2000, 1, 1)
    latest = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    offsets = st.sampled_from([dt.timezone.utc, dt.timezone(dt.timedelta(hours=5, minutes=30)),
                               dt.timezone(dt.timedelta(hours=-8))])
    return st.builds(lambda t, tz: t.replace(tzinfo=dt.timezone.utc).astimezone(tz).isoformat(),
                     st.datetimes(min_value=earliest, max_value=latest), offsets)


def _bboxes() -> st.SearchStrategy[str]:
    lon = st.floats(-180, 180, allow_nan=False).map(lambda v: round(v, 4))
    lat = st.floats(-90, 90, allow_nan=False).map(lambda v: round(v, 4))
    return st.builds(lambda a, b, c, d: f"{a:g},{min(b, d):g},{c:g},{max(b, d):g}", lon, lat, lon, lat)


schemathesis.openapi.format("imei", _imeis())
schemathesis.openapi.format("device-time", _device_times())
schemathesis.openapi.format("bbox", _bboxes())
schemathesis.openapi.media_type("application/offset+octet-stream", st.binary(max_size=64))


@pytest.fixture(scope="module", params=combination_params())
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    with backend_args(request.param, request) as args:
        srv = start_server(tmp_path_factory.mktemp("fuzz") / "data", args)
        try:
            yield seed(srv, SEED_IMEIS)
        finally:
            srv.stop()


def _schema(**phases: Any) -> Any:
    config = {"seed": SEED, "request-timeout": 30, "phases": phases}
    return schemathesis.openapi.from_dict(openapi.document(), config=schemathesis.Config.from_dict(config))


#: the document the server serves (``test_the_served_document_is_the_one_fuzzed`` checks it is this one),
#: loaded at import since schemathesis makes one test per operation at collection. With a token: the
#: coverage phase (boundary values, each parameter and property missing or of the wrong type, every
#: method the path does not have) and the fuzzing phase. Without a token every answer is the same 401,
#: so the fuzzing phase alone, with fewer examples.
schema = _schema()
PUBLIC = [o["operationId"] for item in openapi.document()["paths"].values() for o in item.values()
          if isinstance(o, dict) and "operationId" in o and o.get("x-roles") is None]
schema_anonymous = _schema(coverage={"enabled": False}).exclude(operation_id=PUBLIC)


def _prepare(case: Any, seeded: Seeded) -> None:
    """Give a valid request what only a client who read the descriptions would send (see the module
    docstring); an invalid request is left as generated."""
    if not case.meta or not case.meta.generation.mode.is_positive:
        return
    if isinstance(case.query, dict):
        query = case.query
        whole_window = query.get("format") in ("gpx", "kml") or case.operation.path.endswith(("/trips", "/stops"))
        if query.get("cursor"):
            if whole_window or case.operation.path not in seeded.cursors:
                del query["cursor"]  # not paged (whole-window exports, trips), or a list with no seeded page
            else:
                query["cursor"] = seeded.cursors[case.operation.path]
        if "wait" in query:
            query["wait"] = min(int(query["wait"]), 1)
        _window(query, whole_window)
    headers = case.headers if case.headers is not None else {}
    if headers.get("X-Content-SHA256") and case.method.upper() == "PUT":
        data = case.body if isinstance(case.body, bytes) else case.body.encode() if isinstance(case.body, str) else b""
        headers["X-Content-SHA256"] = hashlib.sha256(data).hexdigest()
    body = case.body if isinstance(case.body, dict) else None
    if body and "url" in body and case.operation.path.startswith("/api/v1/admin/webhooks"):
        # a webhook URL must name a public host that resolves (the description says so; no DNS here)
        body["url"] = "https://93.184.215.14/fuzz"
    if body and isinstance(body.get("devices"), list):  # each IMEI at most once
        unique = {d["imei"]: d for d in body["devices"] if isinstance(d, dict) and "imei" in d}
        body["devices"] = list(unique.values())
    if body and isinstance(body.get("geometry"), dict):
        _valid_geometry(body["geometry"])
    if body and body.get("command") == "request_video" and isinstance(body.get("args"), dict):
        args = body["args"]
        try:
            start, end = (dt.datetime.fromisoformat(args["from"].replace("Z", "+00:00")),
                          dt.datetime.fromisoformat(args["to"].replace("Z", "+00:00")))
        except (KeyError, TypeError, ValueError, OverflowError):
            return
        if end <= start:
            args["from"], args["to"] = args["to"], args["from"]
            if end == start:
                args["to"] = (end + dt.timedelta(seconds=1)).isoformat()


def _valid_geometry(geometry: dict[str, Any]) -> None:
    """A polygon or multipolygon valid by the rules the document describes but cannot state (see the module
    docstring), in place: a small square at its first position."""
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        return
    try:
        parse_geometry(geometry)
        return
    except InvalidArgument:
        pass
    try:
        first = geometry["coordinates"][0][0][0] if geometry["type"] == "Polygon" else \
            geometry["coordinates"][0][0][0][0]
        lon, lat = min(max(float(first[0]), -179.0), 179.0), min(max(float(first[1]), -89.0), 89.0)
    except (LookupError, TypeError, ValueError):
        lon, lat = 0.0, 0.0
    ring = [[lon, lat], [lon + 0.5, lat], [lon + 0.5, lat + 0.5], [lon, lat + 0.5], [lon, lat]]
    geometry["coordinates"] = [ring] if geometry["type"] == "Polygon" else [[ring]]


def _window(query: dict[str, Any], bounded: bool) -> None:
    """``until`` after ``since`` (and, for trips, stops and GPX/KML exports, at most 31 days after; there
    ``until`` defaults to now, so a ``since`` alone gets an ``until``)."""
    def parse(key: str) -> dt.datetime | None:
        try:
            return dt.datetime.fromisoformat(query[key].replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
    start, end = parse("since"), parse("until")
    if start is None or (end is None and not bounded):
        return
    if end is None or end <= start or (bounded and end - start > dt.timedelta(days=31)):
        with contextlib.suppress(OverflowError):
            query["until"] = (start + dt.timedelta(hours=1)).isoformat()


def _authorize(case: Any, seeded: Seeded, anonymous: bool) -> None:
    """Put the real token of the role the operation needs where the generator put a made-up one. A
    case generated without the header (to see it refused) stays without; ``anonymous`` sends none."""
    if case.headers is None:
        case.headers = {}
    if case.cookies:  # the console's session cookie (the admin plane's other scheme): only real tokens here
        case.cookies.pop("truckx_session", None)
    generated = next((k for k in case.headers if k.lower() == "authorization"), None)
    roles = case.operation.definition.raw.get("x-roles")
    if anonymous or roles is None:
        if generated is not None:
            del case.headers[generated]
        return
    if generated is None and case.meta is not None and not case.meta.generation.mode.is_positive:
        return
    if generated is not None:
        del case.headers[generated]
    case.headers.update(seeded.device() if roles == ["device"] else seeded.admin())
    # these are real credentials, as one of schemathesis' auth providers would set them (it marks the case
    # the same way): its ignored_auth check then probes without them instead of taking them for made-up
    case._has_explicit_auth = True


SETTINGS = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@schema.parametrize()
@settings(max_examples=EXAMPLES, **SETTINGS)
def test_with_the_token_its_role_needs_every_promise_of_the_document_is_kept(case: Any, seeded: Seeded) -> None:
    _prepare(case, seeded)
    _authorize(case, seeded, anonymous=False)
    case.call_and_validate(base_url=seeded.url)


@schema_anonymous.parametrize()
@settings(max_examples=max(2, EXAMPLES // 2), **SETTINGS)
def test_without_a_token_every_promise_of_the_document_is_kept(case: Any, seeded: Seeded) -> None:
    _prepare(case, seeded)
    _authorize(case, seeded, anonymous=True)
    case.call_and_validate(base_url=seeded.url)


def test_the_served_document_is_the_one_fuzzed(seeded: Seeded) -> None:
    assert httpx.get(seeded.url + "/api/v1/openapi.json").json() == openapi.document()


def test_the_server_logged_no_traceback(seeded: Seeded) -> None:
    """Runs after the fuzzing of the same server (same module, same parameter)."""
    found = tracebacks(seeded.srv)
    assert not found, "uncaught exceptions in the server's log:\n" + "\n----\n".join(found[:5])
