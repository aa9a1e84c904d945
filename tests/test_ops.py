"""The operator's view: /healthz, /readyz following the helpdesk, /metrics moving."""
from __future__ import annotations

import asyncio

import aiohttp


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            return response.status, await response.text()


def _value(metrics: str, name: str) -> float:
    """The value of one sample, e.g. 'bridge_customers' or 'x_total{a="1",b="2"}'."""
    for line in metrics.splitlines():
        if line.split(" ")[0] == name:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_readyz_follows_the_helpdesk(make_bridge, sandbox):
    bridge, _console = await make_bridge()
    base = bridge.http.url
    assert await _get(f"{base}/healthz") == (200, "ok\n")
    status, text = await _get(f"{base}/readyz")
    assert status == 200 and text.startswith("ready")  # on PostgreSQL: and its shards
    await sandbox.stop()
    await asyncio.sleep(0.3)
    status, reason = await _get(f"{base}/readyz")
    assert status == 503 and "helpdesk: not connected" in reason
    assert (await _get(f"{base}/healthz"))[0] == 200  # alive all the same
    await sandbox.start()
    await bridge.relay.link.wait_connected(20)
    assert (await _get(f"{base}/readyz"))[0] == 200


async def test_metrics_move_during_a_relayed_conversation(make_bridge, sandbox):
    bridge, console = await make_bridge()
    url = f"{bridge.http.url}/metrics"
    before = (await _get(url))[1]
    assert _value(before, 'bridge_messages_relayed_total{direction="to_helpdesk",'
                          'platform="console"}') == 0
    await console.say("ann", "hello")
    await console.expect("ann", "You said")
    await console.say("ann", "it is resolved")
    await console.expect("ann", "Did this solve")
    await asyncio.sleep(0.1)
    status, after = await _get(url)
    assert status == 200
    assert _value(after, 'bridge_messages_relayed_total{direction="to_helpdesk",'
                         'platform="console"}') == 2
    assert _value(after, 'bridge_messages_relayed_total{direction="to_customer",'
                         'platform="console"}') == 3  # two replies and the close prompt
    assert _value(after, 'bridge_delivery_seconds_count{direction="to_customer"}') == 3
    assert _value(after, "bridge_customers") == 1
    assert _value(after, "bridge_open_conversations") == 1
    assert _value(after, 'bridge_queue_depth{direction="to_customer"}') == 0
    # the soak's gauges: this process, its tasks, its database connections
    assert _value(after, "process_resident_memory_bytes") > 10 * 2**20
    assert _value(after, "process_open_fds") > 0
    assert _value(after, "bridge_asyncio_tasks") >= 5  # drainers, link consumers, server...
    assert _value(after, "bridge_db_connections") >= 1
    await sandbox.drop_connections()
    await bridge.relay.link.wait_connected(20)
    await asyncio.sleep(0.3)
    assert _value((await _get(url))[1], "bridge_helpdesk_reconnects") >= 1
