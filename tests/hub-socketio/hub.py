"""The hub's Socket.IO events, driven by the official Python client
(python-socketio) against a real `prise serve`.

    python hub.py HTTP_URL

Runs in websocket-only and polling-only modes; prints one line per check and
"N passed, M failed"; exit code 0 only when nothing failed.
"""
import os
import sys
import threading

import socketio

URL = sys.argv[1]
passed = failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
        passed += 1
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - report every failure
        failed += 1
        print(f"FAIL {name}: {e!r}")


def scenario(transport):
    room = f"py-{transport}-{os.getpid()}"
    a = socketio.Client(reconnection=False)
    b = socketio.Client(reconnection=False)
    got = []
    event = threading.Event()

    @b.on("message")
    def on_message(msg, offset):
        got.append((msg, offset))
        event.set()

    a.connect(URL, auth={"name": "py-a"}, transports=[transport], wait_timeout=5)
    b.connect(URL, auth={"name": "py-b"}, transports=[transport], wait_timeout=5)
    try:
        ja = a.call("join", room, timeout=5)
        assert ja["room"] == room and ja["offset"] == 0, ja
        jb = b.call("join", {"room": room}, timeout=5)
        assert [m["name"] for m in jb["members"]] == ["py-a", "py-b"], jb
        ack = a.call("publish", {"room": room, "content": {"hello": "python"}}, timeout=5)
        assert ack["offset"] == 1, ack
        assert event.wait(5), "no message"
        msg, offset = got[0]
        assert msg["content"] == {"hello": "python"} and msg["userName"] == "py-a", msg
        assert isinstance(offset, str), offset
        bad = a.call("publish", {"room": "elsewhere", "content": 1}, timeout=5)
        assert bad["error"]["code"] == "NO_ROOM", bad
        hist = b.call("history", {"room": room}, timeout=5)
        assert [m["offset"] for m in hist["messages"]] == [1], hist
        pres = b.call("presence", room, timeout=5)
        assert sorted(m["name"] for m in pres["members"]) == ["py-a", "py-b"], pres
    finally:
        a.disconnect()
        b.disconnect()


for t in ("websocket", "polling"):
    check(f"{t}: join, publish with ack, message push with offset, errors, history, presence",
          lambda t=t: scenario(t))

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
