"""Hypothesis-generated frames on the real device WebSocket of a real ``truckx-server`` process, on each
store combination: deep nesting, numbers at and past the edges (1e308, -0.0, NaN and Infinity as JSON
text, big integers), odd but valid and invalid times, unicode, wrong types, missing fields, huge seqs,
binary frames, frames that are not JSON at all.

What must hold:

- the socket is never dropped: each frame is answered (an ``error`` frame, a ``pong``, an ``ack``) and
  the session goes on; a frame over the size limit closes it with 1009, never without a code;
- a ``locations`` frame that mixes valid and invalid points gets an ``error`` naming exactly the first
  invalid ones (at most ``MAX_REJECTED_NAMED``) and counting all of them, and its ``ack``;
- nothing valid is lost and nothing invalid is kept: at the end the device's stored track is exactly
  the valid points the test sent;
- the handshake answers any token with 401/403, never a 5xx; the server logs no traceback.

``TRUCKX_FUZZ_EXAMPLES`` (default 8) scales the number of examples (x4 here).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import math
import os
from typing import Any, Iterator, NoReturn

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.protocol import State
from websockets.sync.client import ClientConnection, connect

from tests.fuzz_support import backend_args, combination_params, start_server, tracebacks
from tests.process import ServerProcess
from tests.support import new_imei
from truckx_server.handlers.device_socket import MAX_REJECTED_NAMED

EXAMPLES = int(os.environ.get("TRUCKX_FUZZ_EXAMPLES", "8")) * 4
MAX_FRAME = 256 * 1024
#: no shrinking: the server keeps state between examples (the track, the seqs), so a replay is not the
#: same test; the first failing example is reported as it was drawn
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
#: every valid point gets its own second, from here on, so the stored track can be compared exactly
BASE = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
OFFSETS = [dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)), dt.timezone(dt.timedelta(hours=-12)),
           dt.timezone(dt.timedelta(hours=5, minutes=45))]


class Device:
    """The device under fuzzing: its connection, its next seq, and every valid point it sent."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        [dev] = srv.register([new_imei()])
        self.imei, self.token = dev["imei"], dev["token"]
        self.seconds = itertools.count()
        self.seqs = itertools.count(1)
        self.valid: set[dt.datetime] = set()
        #: how each session the server dropped ended (the test fails on the first; kept for the report)
        self.drops: list[str] = []
        self.sessions = contextlib.ExitStack()
        self.unclean = False
        self.ws: ClientConnection = self.sessions.enter_context(self.connect())

    @contextlib.contextmanager
    def example(self) -> Iterator[None]:
        """One example on an open session with nothing unread: after a failed one (hypothesis replays
        it to report it) the session starts afresh."""
        if self.unclean or self.ws.protocol.state is not State.OPEN:
            self.ws.close()
            self.ws = self.sessions.enter_context(self.connect())
            self.unclean = False
        try:
            yield
        except BaseException:
            self.unclean = True
            raise

    def connect(self) -> ClientConnection:
        return connect(f"{self.srv.ws_url}/api/v1/device/ws", additional_headers={
            "Authorization": f"Bearer {self.token}"}, max_size=None, open_timeout=30)

    def send(self, frame: str | bytes) -> None:
        try:
            self.ws.send(frame)
        except ConnectionClosed as exc:
            self.dropped(exc)

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        try:
            return json.loads(self.ws.recv(timeout=timeout))
        except ConnectionClosed as exc:
            self.dropped(exc)

    def dropped(self, exc: ConnectionClosed) -> NoReturn:
        self.drops.append(f"received {exc.rcvd}, sent {exc.sent}")
        raise AssertionError(f"the server closed the session: {self.drops[-1]}") from None

    def barrier(self) -> list[dict[str, Any]]:
        """Everything the server sent up to the pong of a ping sent now (frames are handled in order)."""
        self.send(json.dumps({"type": "ping"}))
        frames = []
        while (frame := self.recv()) != {"type": "pong"}:
            frames.append(frame)
        return frames

    def wait_ack(self, seq: int) -> list[dict[str, Any]]:
        frames = []
        while not ((frame := self.recv()).get("type") == "ack" and frame["seq"] == seq):
            frames.append(frame)
        return frames


@pytest.fixture(scope="module", params=combination_params())
def device(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Device]:
    with backend_args(request.param, request) as args:
        srv = start_server(tmp_path_factory.mktemp("wsfuzz") / "data", args,
                           "--max-ws-message-bytes", str(MAX_FRAME))
        try:
            dev = Device(srv)
            with dev.sessions:
                yield dev
        finally:
            srv.stop()


# -- valid points: odd but valid, each at its own second --------------------------------------------

def _time_text(instant: dt.datetime, tz: dt.tzinfo, style: int) -> str:
    local = instant.astimezone(tz)
    text = local.isoformat()  # +00:00 for UTC, microseconds only when there are some
    if style == 1 and tz is dt.timezone.utc:
        text = text.replace("+00:00", "Z")
    elif style == 2:
        text = text.replace("T", "t").replace("+00:00", "z")
    return text


KNOWN_KEYS = {"type", "seq", "points", "ts", "lat", "lon", "speed_kmh", "heading", "alt_m", "accuracy_m"}


@st.composite
def valid_points(draw: st.DrawFn, device: Device) -> dict[str, Any]:
    instant = BASE + dt.timedelta(seconds=next(device.seconds), microseconds=draw(st.integers(0, 999_999)))
    point: dict[str, Any] = {
        "ts": _time_text(instant, draw(st.sampled_from(OFFSETS)), draw(st.integers(0, 2))),
        "lat": draw(st.one_of(st.sampled_from([90, -90, 0, -0.0, 1e-300]), st.floats(-90, 90))),
        "lon": draw(st.one_of(st.sampled_from([180, -180, -0.0]), st.integers(-180, 180), st.floats(-180, 180))),
    }
    for key, lo, hi in (("speed_kmh", 0, 1000), ("heading", 0, 360), ("alt_m", -1000, 20000),
                        ("accuracy_m", 0, 1_000_000)):
        if draw(st.booleans()):
            point[key] = draw(st.one_of(st.integers(lo, hi), st.floats(lo, hi), st.none()))
    if draw(st.booleans()):  # unknown fields are ignored (shallow, well within the nesting bound)
        key = draw(st.text(max_size=8).filter(lambda k: k not in KNOWN_KEYS))
        point[key] = draw(st.one_of(st.text(max_size=20), st.lists(st.integers(), max_size=3)))
    return point


def stored_instant(point: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(point["ts"].upper().replace("Z", "+00:00")).astimezone(dt.timezone.utc)


# -- invalid points: each certainly refused, none deeper than the bound -------------------------------

BAD_TIMES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31T23:59:59Z",
             "2999-01-01T00:00:00Z", "2021-02-30T00:00:00Z", "2021-01-01T00:00:00", "2021-01-01", "", "NaN",
             "+10000-01-01T00:00:00Z", "\u0662\u0660\u0662\u0661-01-01T00:00:00Z"]
NOT_A_NUMBER = st.one_of(st.sampled_from(["NaN", "1", "Infinity", True, False, None, [], {}]), st.text(max_size=5))


@st.composite
def invalid_points(draw: st.DrawFn) -> Any:
    fine = {"ts": "2021-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0}
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return {**fine, "ts": draw(st.one_of(st.sampled_from(BAD_TIMES), st.integers(), st.floats(), st.none()))}
    if kind == 1:
        key, limit = draw(st.sampled_from([("lat", 90), ("lon", 180)]))
        return {**fine, key: draw(st.one_of(st.sampled_from([1e308, -1e308, 10**30, -(10**30), limit + 1e-9]),
                                            st.floats(min_value=limit, exclude_min=True, allow_infinity=False),
                                            NOT_A_NUMBER))}
    if kind == 2:
        key, lo, hi = draw(st.sampled_from([("speed_kmh", 0, 1000), ("heading", 0, 360), ("alt_m", -1000, 20000)]))
        return {**fine, key: draw(st.one_of(st.sampled_from([lo - 1, hi + 1, 1e308, -1e308]), NOT_A_NUMBER
                                            .filter(lambda v: v is not None)))}
    if kind == 3:
        missing = draw(st.sampled_from(list(fine)))
        return {k: v for k, v in fine.items() if k != missing}
    if kind == 4:  # 5 minutes ahead is the most a device clock may be
        return {**fine, "ts": (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)).isoformat()}
    return draw(st.one_of(st.integers(), st.text(max_size=10), st.lists(st.integers(), max_size=2), st.none()))


# -- whole frames that are refused ---------------------------------------------------------------------

def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                           | st.text(max_size=10), lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=10)
INVALID_SEQS = st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), st.sampled_from(
    [1.5, 1e308, "1", True, None, [], {}]))


@st.composite
def refused_frames(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 8))
    point = {"ts": "2021-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0}
    if kind == 0:  # nested past the bound, up to far past the recursion limit
        depth = draw(st.one_of(st.integers(33, 60), st.sampled_from([1000, 5000, 30_000])))
        inner = _nested(depth, draw(st.sampled_from(["list", "dict"])))
        return draw(st.sampled_from([inner, '{"type":"ping","x":%s}' % inner,
                                     '{"type":"locations","seq":1,"points":[%s]}' % inner]))
    if kind == 1:  # not JSON as RFC 8259 has it
        return draw(st.sampled_from(['{"type":"location","seq":1,"ts":"2021-01-01T00:00:00Z","lat":NaN,"lon":1}',
                                     '{"type":"ping","x":Infinity}', '{"type":"ping","x":-Infinity}',
                                     '{"type":"ping","x":"\\ud800"}', "{'type': 'ping'}", '{"type":"ping"',
                                     '{"type":"ping","x":1' + "0" * 5000 + "}"]))
    if kind == 2:  # text that is not JSON (unicode of every kind)
        return draw(st.text(min_size=1, max_size=200).filter(lambda t: not _is_json(t)))
    if kind == 3:  # JSON that is not an object
        return json.dumps(draw(JSON_VALUES.filter(lambda v: not isinstance(v, dict))))
    if kind == 4:  # an object without a known type
        value = draw(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=4))
        value["type"] = draw(st.one_of(st.text(max_size=10), st.integers(), st.none(), st.lists(st.text(), max_size=1))
                             .filter(lambda t: t not in ("location", "locations", "ping", "command_result")))
        return json.dumps(value)
    if kind == 5:  # a valid point under a seq that is not one
        return json.dumps({"type": "location", "seq": draw(INVALID_SEQS), **point})
    if kind == 6:  # points that are not a list of 1 to 1000
        points = draw(st.one_of(st.just([]), st.just([point] * 1001), JSON_VALUES.filter(lambda v: not isinstance(v, list))))
        return json.dumps({"type": "locations", "seq": 1, "points": points})
    if kind == 7:  # a command result that names no command of this device
        return json.dumps({"type": "command_result", "id": draw(JSON_VALUES), "ok": draw(JSON_VALUES),
                           "detail": draw(JSON_VALUES)})
    return draw(st.binary(min_size=1, max_size=64))


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# -- the tests -----------------------------------------------------------------------------------------

@st.composite
def mixed_frames(draw: st.DrawFn, device: Device) -> tuple[str, int, list[dict[str, Any]], list[int]]:
    """A ``locations`` (or ``location``) frame of valid and invalid points: (text, seq, valid, bad indices)."""
    seq = draw(st.one_of(st.just(next(device.seqs)), st.just(2**63 - 1), st.just(0)))
    points = draw(st.lists(st.one_of(valid_points(device).map(lambda p: (True, p)),
                                     invalid_points().map(lambda p: (False, p))), min_size=1, max_size=40))
    if len(points) == 1 and points[0][0] and draw(st.booleans()):
        frame = {"type": "location", "seq": seq, **points[0][1]}
    else:
        frame = {"type": "locations", "seq": seq, "points": [p for _, p in points]}
    return (json.dumps(frame), seq, [p for ok, p in points if ok], [i for i, (ok, _) in enumerate(points) if not ok])


@SETTINGS
@given(data=st.data())
def test_every_frame_is_answered_and_every_valid_point_kept(device: Device, data: st.DataObject) -> None:
    frames = data.draw(st.lists(st.one_of(mixed_frames(device), refused_frames()), min_size=1, max_size=4),
                       label="frames")
    with device.example():
        for frame in frames:
            check_frame(device, frame)


def check_frame(device: Device, frame: tuple[str, int, list[dict[str, Any]], list[int]] | str | bytes) -> None:
    """Send one frame and check its answers: a mixed frame's error names exactly its invalid points and
    its seq is acked; a refused frame gets one error frame; the session goes on either way."""
    if isinstance(frame, tuple):
        text, seq, valid, bad = frame
        device.send(text)
        answers = device.wait_ack(seq)
        errors = [f for f in answers if f.get("type") == "error"]
        if bad:
            assert len(errors) == 1 and errors[0]["seq"] == seq, answers
            # the first MAX_REJECTED_NAMED refused points are named; the message gives the count
            refused = [r["index"] for r in errors[0]["rejected"]]
            points = json.loads(text).get("points") or [json.loads(text)]
            named = bad[:MAX_REJECTED_NAMED]
            assert refused == named, ("accepted although invalid:", [points[i] for i in named if i not in refused],
                                      "refused although valid:", [points[i] for i in refused if i not in bad])
            assert errors[0]["message"].startswith(f"{len(bad)} of {len(points)} "), errors[0]["message"]
        else:
            assert not errors, (errors, text[:500])
        device.valid.update(stored_instant(p) for p in valid)
        return
    device.send(frame)
    answers = device.barrier()
    errors = [f for f in answers if f.get("type") == "error"]
    assert len(errors) == 1, (answers, repr(frame)[:300])
    assert errors[0]["code"] in ("invalid_json", "invalid_argument", "not_found"), errors


def test_a_frame_over_the_limit_closes_with_1009(device: Device) -> None:
    [other] = device.srv.register([new_imei()])  # not the fuzzed device: its session must stay the first one
    with connect(f"{device.srv.ws_url}/api/v1/device/ws", additional_headers={
            "Authorization": f"Bearer {other['token']}"}, max_size=None, open_timeout=30) as ws:
        ws.send(json.dumps({"type": "ping", "pad": "x" * (MAX_FRAME + 1)}))
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009


def test_the_stored_track_is_exactly_the_valid_points(device: Device) -> None:
    """After the fuzzing above (same module, same server): nothing valid lost, nothing invalid kept."""
    assert not device.drops, device.drops
    assert device.valid, "the fuzzing sent no valid point"
    device.barrier()  # the session is still the first one, still open
    headers = {"Authorization": f"Bearer {device.srv.admin_token()}"}
    stored: list[dt.datetime] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        r = httpx.get(f"{device.srv.url}/api/v1/admin/devices/{device.imei}/locations", params=params,
                      headers=headers, timeout=30)
        r.raise_for_status()
        stored += [dt.datetime.fromisoformat(p["ts"].replace("Z", "+00:00")) for p in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert len(stored) == len(set(stored))
    assert set(stored) == device.valid, (f"lost: {sorted(device.valid - set(stored))[:5]}, "
                                         f"kept but invalid: {sorted(set(stored) - device.valid)[:5]}")


@SETTINGS
@given(token=st.one_of(st.text(alphabet=st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=300),
                       st.sampled_from(["e30.e30.e30", "W1tbW1tb.e30.x", "a" * 8000, "Bearer", "null"])))
def test_the_handshake_answers_any_token_with_401_or_403(device: Device, token: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        with connect(f"{device.srv.ws_url}/api/v1/device/ws",
                     additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30):
            pass
    assert info.value.response.status_code in (400, 401, 403), info.value.response


def test_the_server_logged_no_traceback(device: Device) -> None:
    found = tracebacks(device.srv)
    assert not found, "uncaught exceptions in the server's log:\n" + "\n----\n".join(found[:5])


def test_numbers_at_the_edges_are_numbers() -> None:
    """The generators above mean what they say (a check of the test, not of the server)."""
    assert json.dumps(-0.0) == "-0.0" and math.copysign(1, json.loads("-0.0")) == -1
    assert stored_instant({"ts": "2021-03-04t05:06:07.5z"}) == dt.datetime(2021, 3, 4, 5, 6, 7, 500000,
                                                                           tzinfo=dt.timezone.utc)
