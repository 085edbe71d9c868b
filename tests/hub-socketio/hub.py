"""The hub's Socket.IO events, driven by the official Python client
(python-socketio) against a real `prise serve`.

    python hub.py [HTTP_URL [AUTH_URL SECRET]]

Without HTTP_URL it starts its own `prise serve` (PRISE_BIN). With AUTH_URL
(a server run with --jwt-secret SECRET --anonymous deny) it also checks
sign-in with tokens. Runs in websocket-only and polling-only modes; prints one line per check and
"N passed, M failed"; exit code 0 only when nothing failed.
"""
import os
import sys
import threading
import time
from pathlib import Path

import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from harness import Checks, jwt, start_prise  # noqa: E402

if len(sys.argv) > 1:
    URL, server = sys.argv[1], None
else:
    server = start_prise(["--store", "memory", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
    URL = f"http://{server.addrs['http']}"
checks = Checks()


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
        assert pres["count"] == 2 and pres["complete"] is True, pres
        first = b.call("presence", {"room": room, "limit": 1}, timeout=5)
        assert first["complete"] is False and "next" in first, first
        rest = b.call("presence", {"room": room, "after": first["next"]}, timeout=5)
        assert [m["name"] for m in first["members"] + rest["members"]] == ["py-a", "py-b"], rest
    finally:
        a.disconnect()
        b.disconnect()


def tokens(auth_url, secret):
    room = f"py-auth-{os.getpid()}"
    exp = int(time.time()) + 60
    bad = socketio.Client(reconnection=False)
    try:
        bad.connect(auth_url, auth={"token": jwt({"sub": "u-py", "exp": exp}, "wrong")},
                    transports=["websocket"], wait_timeout=5)
    except socketio.exceptions.ConnectionError:
        pass
    else:
        bad.disconnect()
        raise AssertionError("a token with a bad signature was accepted")
    c = socketio.Client(reconnection=False)
    c.connect(auth_url, auth={"token": jwt({"sub": "u-py", "name": "Py", "exp": exp}, secret)},
              transports=["websocket"], wait_timeout=5)
    try:
        ack = c.call("join", room, timeout=5)
        assert [m["name"] for m in ack["members"]] == ["Py"], ack
    finally:
        c.disconnect()


try:
    if len(sys.argv) > 3:
        checks.check("a valid token signs in with the name from its claims; a bad signature is refused",
                     lambda: tokens(sys.argv[2], sys.argv[3]))
    for t in ("websocket", "polling"):
        checks.check(
            f"{t}: join, publish with ack, message push with offset, errors, history, presence",
            lambda t=t: scenario(t),
        )
finally:
    if server:
        server.stop()
checks.finish()
