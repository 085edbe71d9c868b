"""An independent permessage-deflate client: Python's socket and zlib only.

usage: zlib_peer.py PORT

Opens a WebSocket to 127.0.0.1:PORT offering permessage-deflate, sends three
compressed text messages (the second and third refer back to the first through
the shared window), a compressed message split over two frames and an
uncompressed one, and checks that each comes back intact. Replies are inflated
with one window kept across messages (context takeover). Exits 0 on success.
"""
import base64
import os
import socket
import struct
import sys
import zlib

TAIL = b"\x00\x00\xff\xff"


def frame(first_byte, payload):
    """A masked client frame."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first_byte, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first_byte, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first_byte, 0x80 | 127, n)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SystemExit("connection closed early")
        data += chunk
    return data


def read_frame(sock):
    b0, b1 = read_exact(sock, 2)
    if b1 & 0x80:
        raise SystemExit("server frames must not be masked")
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", read_exact(sock, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", read_exact(sock, 8))[0]
    return b0, read_exact(sock, n)


def main():
    port = int(sys.argv[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: %s\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
            % key
        ).encode()
    )
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += read_exact(sock, 1)
    text = head.decode().lower()
    if not text.startswith("http/1.1 101"):
        raise SystemExit("no upgrade: " + text)
    if "sec-websocket-extensions: permessage-deflate" not in text:
        raise SystemExit("deflate not negotiated: " + text)

    deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    inflate = zlib.decompressobj(-15)
    messages = ["hello from zlib " * 40, "hello from zlib " * 40, "é ü ✓ " * 100]
    for message in messages:
        data = deflate.compress(message.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        sock.sendall(frame(0x80 | 0x40 | 0x1, data[:-4]))
        b0, payload = read_frame(sock)
        if b0 != 0x80 | 0x40 | 0x1:
            raise SystemExit("expected one compressed text frame, got 0x%02x" % b0)
        back = inflate.decompress(payload + TAIL).decode()
        if back != message:
            raise SystemExit("echo differs")
    # One compressed message in two frames: RSV1 on the first only.
    message = "fragmented " * 300
    data = deflate.compress(message.encode()) + deflate.flush(zlib.Z_SYNC_FLUSH)
    half = len(data) // 2
    sock.sendall(frame(0x40 | 0x1, data[:half]) + frame(0x80, data[half:-4]))
    _, payload = read_frame(sock)
    if inflate.decompress(payload + TAIL).decode() != message:
        raise SystemExit("fragmented echo differs")
    # An uncompressed message is still allowed; the echo comes back compressed.
    sock.sendall(frame(0x80 | 0x2, b"plain bytes"))
    b0, payload = read_frame(sock)
    if b0 != 0x80 | 0x40 | 0x2 or inflate.decompress(payload + TAIL) != b"plain bytes":
        raise SystemExit("plain echo differs")
    sock.sendall(frame(0x88, struct.pack("!H", 1000)))
    b0, payload = read_frame(sock)
    if b0 != 0x88:
        raise SystemExit("expected a close frame")
    print("ok")


main()
