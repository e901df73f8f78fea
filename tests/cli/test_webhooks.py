"""truckx webhooks add | list | deliveries | retry | remove, against a real server that delivers to a real
receiver on 127.0.0.1 (so this module's server runs with --webhook-deny-private false)."""

from __future__ import annotations

import dataclasses
import time
from typing import Iterator

import pytest

from tests.cli.support import Env, running_env, server_settings
from tests.webhook_receiver import Receiver


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("cli-webhooks")
    settings = dataclasses.replace(server_settings(tmp / "data"), webhook_deny_private=False,
                                   webhook_retry_base_s=0.05, webhook_retry_window_s=0)
    with running_env(tmp, settings) as env:
        yield env


def _until(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_add_list_deliveries_retry_remove(env: Env) -> None:
    secret: dict[str, str] = {}
    with Receiver(secret_of=lambda: secret.get("s"), fail_first=1) as rx:
        hook = env.json("webhooks", "add", rx.url, "--event", "alarm.created", "--event", "alarm.created",
                        "--description", "pager")
        secret["s"] = hook["secret"]
        assert hook["events"] == ["alarm.created"] and hook["secret"].startswith("whsec_")
        table = env.ok("webhooks", "list").stdout
        assert hook["id"] in table and "pager" in table and hook["secret"] not in table
        assert [h["id"] for h in env.json("webhooks", "list")] == [hook["id"]]

        dev = env.register()
        first = env.post_alarm(dev, type="CRASH", ts="2026-11-29T10:00:00Z", lat=1.0, lon=2.0)
        env.post_alarm(dev, type="CRASH", ts="2026-11-29T10:01:00Z", lat=1.0, lon=2.0)
        # the first attempt fails; with a retry window of 0 s the first delivery is given up at once
        _until(lambda: len(rx.delivered) == 1, "the second delivery")
        items = _until(lambda: [d for d in env.json("webhooks", "deliveries", hook["id"])
                                if d["status"] != "pending"] and env.json("webhooks", "deliveries", hook["id"]),
                       "both deliveries finished")
        assert [d["status"] for d in items] == ["delivered", "failed"]
        table = env.ok("webhooks", "deliveries", hook["id"]).stdout
        assert "failed" in table and "delivered" in table and "HTTP 500" in table

        out = env.json("webhooks", "retry", hook["id"], str(items[1]["id"]))
        assert out["status"] == "pending" and out["message_id"] == items[1]["message_id"]
        _until(lambda: len(rx.delivered) == 2, "the retried delivery")
        assert rx.delivered[1].body["data"]["id"] == first["id"]
        assert all(m.verified for m in rx.delivered)

        result = env.run("webhooks", "retry", hook["id"], "999999")
        assert result.exit_code == 4
        result = env.run("webhooks", "add", "ftp://example.com/x", "--event", "alarm.created")
        assert result.exit_code != 0 and "http" in result.stderr
        assert env.run("webhooks", "add", rx.url).exit_code == 2  # no event given

        env.ok("webhooks", "remove", hook["id"], "--yes")
        assert env.json("webhooks", "list") == []
        assert env.run("webhooks", "remove", hook["id"], "--yes").exit_code == 4
