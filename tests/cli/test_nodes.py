"""``truckx nodes``: the server processes (one here, the test server, holding the device connected to it)."""

from __future__ import annotations

from tests.cli.conftest import Env


def test_nodes_lists_the_server_process(env: Env) -> None:
    dev = env.register()
    with env.connect(dev) as conn:
        conn.wait_ack(conn.send_points([{"ts": "2026-01-01T00:00:00Z", "lat": 1.0, "lon": 2.0}]))
        [node] = env.json("nodes")
        assert node["sessions"] >= 1 and node["node_id"] and node["started_at"] <= node["last_heartbeat"]
        table = env.ok("nodes").stdout
        assert node["node_id"] in table and "Sessions" in table
    csv_out = env.ok("nodes", "--csv").stdout.splitlines()
    assert csv_out[0].split(",")[:2] == ["node_id", "started_at"]
    # without a token: a one-line error
    result = env.run("nodes", env=env.cli_env(TRUCKX_URL=env.url))
    assert result.exit_code != 0 and result.stderr.count("\n") == 1
