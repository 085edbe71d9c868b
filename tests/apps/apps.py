"""Apps on prise with the official Python client (python-socketio): relayed
events with and without echo, namespaces apart, an ephemeral room,
max_members, client_publish = false, and a personal room reached from the
HTTP API on two sessions of one user. The server runs from
tests/apps/prise.toml alone (PRISE_BIN: the binary).

    python apps.py

Prints one line per check and "N passed, M failed"; exit code 0 only when
nothing failed.
"""
import json
import queue
import sys
import time
import urllib.request
from pathlib import Path

import socketio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "common"))
from harness import Checks, jwt, start_prise  # noqa: E402
from harness import next_event as harness_next_event  # noqa: E402

SECRET = "apps-suite-secret"
API_KEY = "apps-suite-key"
server = start_prise(["--config", str(HERE / "prise.toml")])
URL = f"http://{server.addrs['http']}"
checks = Checks()
clients = []


def client(namespace="/", **auth):
    """A connected client of `namespace` whose events of interest are
    queued: `inbox.get()` gives (event, args)."""
    c = socketio.Client(reconnection=False)
    c.inbox = queue.Queue()
    c.on("*", lambda event, *args: c.inbox.put((event, args)), namespace=namespace)
    c.connect(URL, auth=auth, namespaces=[namespace], transports=["websocket"], wait_timeout=5)
    clients.append(c)
    return c


def next_event(c, name, timeout=5):
    return harness_next_event(c.inbox, name, timeout)


def none_of(c, name, namespace="/"):
    """No `name` reached `c` before two round trips of its own."""
    c.call("presence", "anything", namespace=namespace, timeout=5)
    c.call("presence", "anything", namespace=namespace, timeout=5)
    while not c.inbox.empty():
        event, args = c.inbox.get_nowait()
        assert event != name, (event, args)


def api(body):
    req = urllib.request.Request(
        f"{URL}/api/publish",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {API_KEY}"},
    )
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.load(res)


def close_all():
    for c in clients:
        c.disconnect()
    clients.clear()


def relay_with_echo():
    a, b = client(name="py-a"), client(name="py-b")
    a.call("join", "py-r", timeout=5)
    b.call("join", "py-r", timeout=5)
    ack = a.call("chat message", {"text": "hi"}, timeout=5)
    assert ack == {"rooms": [{"room": "py-r", "offset": 1}]}, ack
    data, offset = next_event(b, "chat message")
    assert data == {"text": "hi"} and isinstance(offset, str), (data, offset)
    assert next_event(a, "chat message")[0] == {"text": "hi"}, "echo to the sender"


def relay_without_echo_and_namespaces_apart():
    a, b = client("/game", name="py-a"), client("/game", name="py-b")
    root = client(name="py-root")
    for c, ns in ((a, "/game"), (b, "/game"), (root, "/")):
        c.call("join", "py-a", namespace=ns, timeout=5)
    ack = a.call("move", {"x": 1}, namespace="/game", timeout=5)
    assert ack["rooms"][0]["room"] == "py-a", ack
    assert next_event(b, "move")[0] == {"x": 1}
    none_of(a, "move", "/game")
    none_of(root, "move")


def ephemeral_room():
    a, b = client(name="py-a"), client(name="py-b")
    a.call("join", "cursor:py", timeout=5)
    b.call("join", "cursor:py", timeout=5)
    ack = a.call("cursor", [3, 4], timeout=5)
    assert ack == {"rooms": [{"room": "cursor:py", "offset": None}]}, ack
    assert next_event(b, "cursor")[0] == [3, 4]
    hist = b.call("history", {"room": "cursor:py"}, timeout=5)
    assert hist["messages"] == [] and hist["complete"], hist


def max_members():
    users = [client(name=f"py-{i}") for i in range(3)]
    assert users[0].call("join", "small", timeout=5)["room"] == "small"
    assert users[1].call("join", "small", timeout=5)["room"] == "small"
    full = users[2].call("join", "small", timeout=5)
    assert full["error"]["code"] == "ROOM_FULL", full


def client_publish_false():
    a = client(name="py-a")
    a.call("join", "news", timeout=5)
    refused = a.call("publish", {"room": "news", "content": "x"}, timeout=5)
    assert refused["error"]["code"] == "FORBIDDEN", refused
    assert "only the HTTP API" in refused["error"]["message"], refused
    assert a.call("flash", 1, timeout=5)["error"]["code"] == "FORBIDDEN"
    api({"room": "news", "content": "from the API"})
    assert next_event(a, "message")[0]["content"] == "from the API"


def personal_room():
    exp = int(time.time()) + 3600
    token = jwt({"sub": "py-carol", "exp": exp}, SECRET)
    one, two = client(token=token), client(token=token)
    other = client(token=jwt({"sub": "py-dave", "exp": exp}, SECRET))
    api({"room": "user:py-carol", "event": "notify", "content": {"unread": 1}})
    for c in (one, two):
        assert next_event(c, "notify")[0] == {"unread": 1}
    none_of(other, "notify")


try:
    for name, fn in [
        ("relay with echo", relay_with_echo),
        ("relay without echo, namespaces apart", relay_without_echo_and_namespaces_apart),
        ("an ephemeral room delivers without history", ephemeral_room),
        ("max_members refuses ROOM_FULL", max_members),
        ("client_publish = false refused FORBIDDEN", client_publish_false),
        ("a personal room on two sessions from the API", personal_room),
    ]:
        checks.check(name, fn)
        close_all()
finally:
    close_all()
    server.stop()
checks.finish()
