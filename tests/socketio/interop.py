"""Core interop checks with the official Python client (python-socketio)
against the prise-sio conformance example.

    python interop.py http://127.0.0.1:PORT

Runs every check in three transport modes (polling then upgrade, websocket
only, polling only). Prints one line per check and ends with
"N passed, M failed"; exit code 0 only when nothing failed.
"""

import queue
import sys
from pathlib import Path

import socketio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "common"))
from harness import Checks, next_event as next_event_within  # noqa: E402

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else ""
if not BASE:
    print("usage: python interop.py BASE_URL", file=sys.stderr)
    sys.exit(2)

MODES = {
    "upgrade": ["polling", "websocket"],
    "websocket": ["websocket"],
    "polling": ["polling"],
}
WAIT = 5
checks = Checks()
check = checks.check


def new_client(nsp="/", events=("auth", "binary-back", "connect_error")):
    """A client whose listed events on `nsp` land in a queue as (name, args)."""
    c = socketio.Client(reconnection=False)
    inbox = queue.Queue()
    for ev in events:
        c.on(ev, (lambda e: lambda *a: inbox.put((e, a)))(ev), namespace=nsp)
    return c, inbox


def next_event(inbox, name):
    return next_event_within(inbox, name, WAIT)


def run_mode(mode, transports):
    def connect_auth_ack():
        c, inbox = new_client()
        c.connect(BASE, transports=transports, auth={"token": "py"}, wait_timeout=WAIT)
        try:
            assert next_event(inbox, "auth") == ({"token": "py"},)
            who = c.call("whoami", timeout=WAIT)
            assert who["id"] == c.get_sid("/"), who
            assert c.call("echo", ["a", 1, {"b": [True, None]}], timeout=WAIT) == [
                "a",
                1,
                {"b": [True, None]},
            ]
            assert c.call("echo", "héllo", timeout=WAIT) == "héllo"
        finally:
            c.disconnect()

    def refused():
        c, inbox = new_client("/secure")
        try:
            c.connect(
                BASE,
                namespaces=["/secure"],
                transports=transports,
                auth={"token": "nope"},
                wait_timeout=WAIT,
            )
        except socketio.exceptions.ConnectionError:
            pass
        else:
            raise AssertionError("connect to /secure with a bad token succeeded")
        finally:
            c.disconnect()
        (data,) = next_event(inbox, "connect_error")
        assert data == {"message": "unauthorized", "data": {"reason": "bad token"}}, data
        ok, inbox = new_client("/secure")
        ok.connect(
            BASE,
            namespaces=["/secure"],
            transports=transports,
            auth={"token": "secret"},
            wait_timeout=WAIT,
        )
        try:
            assert next_event(inbox, "auth") == ({"token": "secret"},)
        finally:
            ok.disconnect()

    def server_ack():
        c, _ = new_client("/custom")
        c.on("question", lambda q: {"double": q["n"] * 2, "bin": b"\x07\x08"}, namespace="/custom")
        c.connect(BASE, namespaces=["/custom"], transports=transports, wait_timeout=WAIT)
        try:
            res = c.call("ask", {"n": 21}, namespace="/custom", timeout=WAIT)
            assert res["ok"] is True, res
            assert res["answer"]["double"] == 42
            assert res["answer"]["bin"] == b"\x07\x08"
        finally:
            c.disconnect()

    def binary():
        c, inbox = new_client()
        c.connect(BASE, transports=transports, wait_timeout=WAIT)
        try:
            data = bytes([0, 1, 2, 253, 254, 255])
            assert c.call("binary", data, timeout=WAIT) == data
            (back,) = next_event(inbox, "binary-back")
            assert back["len"] == len(data) and back["nested"][0] == data, back
        finally:
            c.disconnect()

    def disconnects():
        c, _ = new_client()
        gone = queue.Queue()
        c.on("disconnect", lambda *a: gone.put(a))
        c.connect(BASE, transports=transports, wait_timeout=WAIT)
        c.emit("kick")
        gone.get(timeout=WAIT)
        assert not c.connected
        c.disconnect()
        c2, _ = new_client()
        c2.connect(BASE, transports=transports, wait_timeout=WAIT)
        c2.disconnect()
        assert not c2.connected

    check(f"[{mode}] connect with auth accepted; emit with ack", connect_auth_ack)
    check(f"[{mode}] connect refused by the application", refused)
    check(f"[{mode}] server emits with ack; client answers (with binary)", server_ack)
    check(f"[{mode}] binary round trip", binary)
    check(f"[{mode}] disconnect both ways", disconnects)


for mode, transports in MODES.items():
    run_mode(mode, transports)
checks.finish()
