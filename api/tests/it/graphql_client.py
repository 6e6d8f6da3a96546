"""The GraphQL API through an independent client: the `gql` package (pinned in
scripts/requirements-test.txt), over HTTP and over graphql-transport-ws.

Run by api/tests/it/graphql.rs with MLC_URL (http://host:port), MLC_KEY (an operator key) and
MLC_CONNECTION (the connection's global ID). It tests the connection ("ping your systems"),
subscribes to the connection's event updates, replays one event and waits for the
subscription to report it, then replays the day's posted events as a batch (a dry run first)
and follows the batch with `replayProgress` until it is done. Prints "ok" and exits 0 on success; anything else is a failure.
"""

import asyncio
import datetime
import os
import sys

from gql import Client, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport

URL = os.environ["MLC_URL"]
KEY = os.environ["MLC_KEY"]
CONNECTION = os.environ["MLC_CONNECTION"]

TEST = gql(
    """mutation($id: ID!) { connectionTest(input: { connectionId: $id }) {
         result { ok checks { code status message fix } } userErrors { code message } } }"""
)
EVENTS = gql(
    """query($id: ID!) { connection(id: $id) { events(first: 20, filter: { status: SUCCEEDED }) {
         nodes { eventId eventType status } } } }"""
)
REPLAY = gql(
    """mutation($id: ID!, $e: String!) { eventReplay(input: { connectionId: $id, eventId: $e }) {
         queued userErrors { code message } } }"""
)
REPLAY_MANY = gql(
    """mutation($id: ID!, $since: String!, $dry: Boolean) { eventsReplay(input: {
         connectionId: $id, since: $since, dryRun: $dry, filter: { status: SUCCEEDED } }) {
         batch { id dryRun events matchedByState { succeeded } } userErrors { code message } } }"""
)
PROGRESS = gql(
    """subscription($b: ID!) { replayProgress(batchId: $b) { queued running succeeded failed } }"""
)
UPDATED = gql(
    """subscription($id: ID!) { eventUpdated(connectionId: $id) { eventId status } }"""
)


def http_client():
    transport = RequestsHTTPTransport(
        url=f"{URL}/graphql", headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    return Client(transport=transport, fetch_schema_from_transport=True)


async def main():
    http = http_client()

    result = http.execute(TEST, variable_values={"id": CONNECTION})["connectionTest"]
    assert result["userErrors"] == [], result
    assert result["result"]["ok"] is True, result
    codes = {c["code"]: c["status"] for c in result["result"]["checks"]}
    assert codes.get("STRIPE_KEY") == "PASS", codes

    events = http.execute(EVENTS, variable_values={"id": CONNECTION})["connection"]["events"]
    nodes = events["nodes"]
    assert nodes, "the connection has posted events to replay"
    target = nodes[0]["eventId"]

    ws = WebsocketsTransport(
        url=URL.replace("http", "ws", 1) + "/graphql/ws",
        init_payload={"Authorization": f"Bearer {KEY}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    seen = []
    async with Client(transport=ws) as session:

        async def watch():
            async for update in session.subscribe(UPDATED, variable_values={"id": CONNECTION}):
                row = update["eventUpdated"]
                seen.append(row)
                if row["eventId"] == target and row["status"] == "SUCCEEDED":
                    return

        watcher = asyncio.create_task(watch())
        # The subscription reports changes from when it starts: give it a moment to.
        await asyncio.sleep(1.0)
        replay = await asyncio.to_thread(
            http.execute, REPLAY, variable_values={"id": CONNECTION, "e": target}
        )
        assert replay["eventReplay"]["queued"] is True, replay
        await asyncio.wait_for(watcher, timeout=30)
    assert any(r["eventId"] == target for r in seen), seen

    # A batch replay of the day's posted events: counted first, then queued and followed.
    since = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).isoformat()
    dry = http.execute(REPLAY_MANY, variable_values={"id": CONNECTION, "since": since, "dry": True})
    dry = dry["eventsReplay"]
    assert dry["userErrors"] == [], dry
    assert dry["batch"]["dryRun"] is True and dry["batch"]["id"] is None, dry
    count = dry["batch"]["events"]
    assert count >= 1 and dry["batch"]["matchedByState"]["succeeded"] == count, dry
    real = http.execute(REPLAY_MANY, variable_values={"id": CONNECTION, "since": since})
    batch = real["eventsReplay"]["batch"]
    assert batch["events"] == count and batch["id"], real
    ws = WebsocketsTransport(
        url=URL.replace("http", "ws", 1) + "/graphql/ws",
        init_payload={"Authorization": f"Bearer {KEY}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    reports = []
    async with Client(transport=ws) as session:

        async def follow():
            # The stream ends by itself once nothing is queued or running.
            async for update in session.subscribe(PROGRESS, variable_values={"b": batch["id"]}):
                reports.append(update["replayProgress"])

        await asyncio.wait_for(follow(), timeout=60)
    last = reports[-1]
    assert last["queued"] == 0 and last["running"] == 0, reports
    assert last["succeeded"] == count and last["failed"] == 0, reports

    # Another tenant's connection, through this key: the subscription is refused (NOT_FOUND),
    # it never streams that tenant's events.
    other = os.environ.get("MLC_OTHER_CONNECTION")
    if other:
        ws = WebsocketsTransport(
            url=URL.replace("http", "ws", 1) + "/graphql/ws",
            init_payload={"Authorization": f"Bearer {KEY}"},
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        async with Client(transport=ws) as session:
            try:
                async for update in session.subscribe(
                    UPDATED, variable_values={"id": other}
                ):
                    raise AssertionError(f"another tenant's event was streamed: {update}")
            except TransportQueryError as e:
                assert "no connection" in str(e), e
            else:
                raise AssertionError("another tenant's subscription was not refused")
    # A connection without a valid key in connection_init is refused before any subscription.
    ws = WebsocketsTransport(
        url=URL.replace("http", "ws", 1) + "/graphql/ws",
        init_payload={"Authorization": "Bearer mlck_not_a_key"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    try:
        async with Client(transport=ws) as session:
            async for update in session.subscribe(UPDATED, variable_values={"id": CONNECTION}):
                raise AssertionError(f"streamed without a valid key: {update}")
    except AssertionError:
        raise
    except Exception:
        pass  # refused: the server closes the connection at connection_init
    else:
        raise AssertionError("a connection without a valid key was accepted")
    print("ok")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # a failure says what happened, for the Rust test's message
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        raise
