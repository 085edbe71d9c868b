"""Socket.IO long-polling through a round-robin balancer in front of three
`prise serve --redis` nodes, driven by the official Python client.

    python cluster.py BALANCER_URL NODE_URL

The polling client goes through the balancer with `Connection: close` on
every request, so its requests land on different nodes; a second client
connects straight to one node over WebSocket. Prints "sid <engine.io sid>",
one line per check and "N passed, M failed"; exit code 0 only when nothing
failed.
"""
import os
import sys
import threading
from pathlib import Path

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from harness import Checks  # noqa: E402

BALANCER, NODE = sys.argv[1], sys.argv[2]
ROOM = f"py-cluster-{os.getpid()}"
checks = Checks()
check = checks.check


# No keep-alive: every polling request opens its own connection.
session = requests.Session()
session.headers["Connection"] = "close"
poller = socketio.Client(reconnection=False, http_session=session)
direct = socketio.Client(reconnection=False)
got = {}
arrived = threading.Condition()


@poller.on("message")
def on_message(msg, offset):
    with arrived:
        got[msg.get("content")] = offset
        arrived.notify_all()


def wait_for(content, timeout=8):
    with arrived:
        assert arrived.wait_for(lambda: content in got, timeout), f"no message {content!r}"


def connect_and_join():
    poller.connect(BALANCER, auth={"name": "py-poller"}, transports=["polling"], wait_timeout=8)
    print(f"sid {poller.eio.sid}", flush=True)
    ack = poller.call("join", ROOM, timeout=8)
    assert ack["room"] == ROOM, ack


def publish_with_ack():
    direct.connect(NODE, auth={"name": "py-direct"}, transports=["websocket"], wait_timeout=8)
    ack = direct.call("join", ROOM, timeout=8)
    assert sorted(m["name"] for m in ack["members"]) == ["py-direct", "py-poller"], ack
    ack = poller.call("publish", {"room": ROOM, "content": "from python polling"}, timeout=8)
    assert ack["room"] == ROOM and isinstance(ack["offset"], int), ack


def receive_from_direct():
    for i in range(5):
        ack = direct.call("publish", {"room": ROOM, "content": f"direct {i}"}, timeout=8)
        assert ack["room"] == ROOM, ack
        wait_for(f"direct {i}")
    assert poller.transport() == "polling", poller.transport()


try:
    check("python polling client connects through the balancer and joins", connect_and_join)
    check("python polling client publishes with ack; presence is shared", publish_with_ack)
    check("messages from a client on one node arrive over polling", receive_from_direct)
finally:
    for c in (poller, direct):
        try:
            c.disconnect()
        except Exception:  # noqa: BLE001 - best effort at the end
            pass

checks.finish()
