"""A backend for prise's hooks, in the Python standard library only.

It checks the signature of every call (X-Prise-Signature: sha256=<HMAC-SHA256
of the body with the shared secret>) and answers each hook:

  connect  the Socket.IO auth token "banned" and the user "banned" are
           refused (BANNED), and so is the next TCP client after GET
           /refuse-tcp (LOCKDOWN); a cookie
           session=<user> or auth {"user": <user>} or the query user=<user>
           names the user; users "extend" and "end" get an expires_at two
           seconds ahead; anyone else is a guest. "vip" is granted room "vip-lounge".
  refresh  "extend" gets an hour more; "end" is refused (SESSION_OVER).
  join     room "secret" is refused (FORBIDDEN_ROOM).
  publish  content with "badword" is refused (PROFANITY); "rewrite me"
           becomes "rewritten".
  rpc      "add" answers the sum of its list; "fail" is refused (OUT_OF_STOCK).

GET /calls answers the calls so far: [{"hook", "signed", "body"}].
GET /refuse-tcp makes the connect hook refuse the next TCP client.
    python3 backend.py SECRET_FILE     (prints "listening PORT", then serves)
"""

import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = open(sys.argv[1], "rb").read().rstrip(b"\r\n")
CALLS = []
LOCK = threading.Lock()
REFUSE_TCP = threading.Event()


def signed(body, header):
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header or "")


def error(code, message):
    return {"error": {"code": code, "message": message}}


def user_of(session):
    cookies = session.get("headers", {}).get("cookie", "")
    for part in cookies.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "session" and value:
            return value
    auth = session.get("auth") or {}
    if isinstance(auth, dict) and auth.get("user"):
        return auth["user"]
    for part in session.get("query", "").split("&"):
        name, _, value = part.partition("=")
        if name == "user" and value:
            return value
    return None


def connect(call):
    session = call["session"]
    auth = session.get("auth") or {}
    if isinstance(auth, dict) and auth.get("token") == "banned":
        return error("BANNED", "this client is banned")
    if session["transport"] == "tcp" and REFUSE_TCP.is_set():
        REFUSE_TCP.clear()
        return error("LOCKDOWN", "no line clients now")
    user = user_of(session)
    if user == "banned":
        return error("BANNED", "this client is banned")
    if user is None:
        return {}
    answer = {"user": {"id": user, "name": user.capitalize(), "info": {"plan": "free"}}}
    if user in ("extend", "end"):
        answer["expires_at"] = int(time.time()) + 2
    if user == "vip":
        answer["rooms"] = ["vip-lounge"]
    return answer


def refresh(call):
    if call["user"]["id"] == "extend":
        return {"expires_at": int(time.time()) + 3600}
    return error("SESSION_OVER", "your session is over")


def join(call):
    if call["room"].endswith("secret"):
        return error("FORBIDDEN_ROOM", "room secret is for staff")
    return {}


def publish(call):
    content = call["content"]
    text = json.dumps(content)
    if "badword" in text:
        return error("PROFANITY", "mind your language")
    if content == "rewrite me":
        return {"content": "rewritten"}
    return {}


def rpc(call):
    if call["method"] == "add":
        return {"result": sum(call["data"])}
    return error("OUT_OF_STOCK", f"cannot {call['method']}")


HOOKS = {"connect": connect, "refresh": refresh, "join": join, "publish": publish, "rpc": rpc}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/refuse-tcp":
            REFUSE_TCP.set()
            self.answer(200, {})
            return
        with LOCK:
            self.answer(200, CALLS)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = signed(body, self.headers.get("X-Prise-Signature"))
        call = json.loads(body)
        with LOCK:
            CALLS.append({"hook": call.get("hook"), "signed": ok, "body": call})
        if not ok:
            self.answer(401, error("BAD_SIGNATURE", "not signed by the hub"))
            return
        self.answer(200, HOOKS[call["hook"]](call))


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
