#!/usr/bin/env python3
"""The services the lab's probes measure on targets-1: the shop's web server (HTTP :80, `/health`
answers 200) and its resolver (DNS :53/udp, A records of shop.example and the lab's hosts)."""
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ADDR = sys.argv[1]


class Shop(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n" if self.path == "/health" else b"not found\n"
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ADDR, 53))
    while True:
        q, peer = s.recvfrom(512)
        if len(q) < 12:
            continue
        qid, _flags, qd = struct.unpack(">HHH", q[:6])
        i, labels = 12, []
        while i < len(q) and q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
            i += q[i] + 1
        question = q[12:i + 5]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0] if i + 3 <= len(q) else 0
        name = ".".join(labels).lower()
        known = name in ("shop.example",)
        answer = b""
        if known and qtype == 1:
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(ADDR)
        rcode = 0 if known else 3
        head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, 1 if answer else 0, 0, 0)
        s.sendto(head + question + answer, peer)


threading.Thread(target=dns, daemon=True).start()
ThreadingHTTPServer((ADDR, 80), Shop).serve_forever()
