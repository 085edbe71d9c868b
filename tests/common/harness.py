"""What the Python test scripts share: named checks that print "ok"/"FAIL"
per check and "N passed, M failed" at the end, a bounded wait for an event,
starting `prise serve` and waiting for its listening lines, and HS256 tokens.

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "common"))
    from harness import Checks, next_event
"""

import base64
import hashlib
import hmac
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


class Checks:
    """Named checks run one after the other; `finish()` prints the totals and
    exits non-zero unless every check passed (and at least one ran)."""

    def __init__(self, trace_lines=4):
        self.passed = 0
        self.failed = 0
        self.trace_lines = trace_lines

    def check(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"ok   {name}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            lines = traceback.format_exc().strip().splitlines()[-self.trace_lines :]
            print(f"FAIL {name}\n     " + "\n     ".join(lines), flush=True)

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(0 if self.failed == 0 and self.passed > 0 else 1)


def next_event(inbox, name, timeout):
    """The args of the next event `name` in `inbox` (a queue of (name, args)),
    dropping the others; raises queue.Empty after `timeout` seconds without one."""
    end = time.monotonic() + timeout
    while True:
        ev, args = inbox.get(timeout=max(0.0, end - time.monotonic()))
        if ev == name:
            return args


def jwt(claims, secret):
    """An HS256 JWT of `claims` signed with `secret`, as `prise serve --jwt-secret` checks them."""

    def b64(v):
        return base64.urlsafe_b64encode(json.dumps(v, separators=(",", ":")).encode()).rstrip(b"=").decode()

    body = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(claims)}"
    sig = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


class Prise:
    """`prise serve ARGS` in a fresh temporary directory, started by
    `start_prise`; `addrs` maps each listener kind ("http", "tcp") to its
    host:port. `stop()` (or leaving the `with` block) ends it by its PID."""

    def __init__(self, proc, addrs, tmp):
        self.proc = proc
        self.addrs = addrs
        self.tmp = tmp

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start_prise(args, want=("http", "tcp"), timeout=15, binary=None):
    """Starts `prise serve ARGS` (PRISE_BIN, else target/debug/prise) and
    returns a `Prise` once it printed a `listening KIND ADDR` line for each
    kind in `want`; raises RuntimeError when it exits first or is silent for
    `timeout` seconds (it is then stopped)."""
    binary = binary or os.environ.get("PRISE_BIN") or str(ROOT / "target" / "debug" / "prise")
    tmp = tempfile.mkdtemp(prefix="prise-test-")
    proc = subprocess.Popen(
        [binary, "serve", *args],
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    server = Prise(proc, {}, tmp)
    end = time.monotonic() + timeout
    try:
        while not all(k in server.addrs for k in want):
            try:
                line = lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"prise printed no listening lines within {timeout} s") from None
            if line is None:
                raise RuntimeError(f"prise exited early (code {proc.wait()})")
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "listening":
                server.addrs[parts[1]] = parts[2]
    except BaseException:
        server.stop()
        raise
    return server
