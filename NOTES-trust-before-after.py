"""Issue-9 items 1, 2, 6, 8, before and after: prints what happens on the tree it imports.

PYTHONPATH=<old tree>/src python NOTES-trust-before-after.py   # before (14884fc)
python NOTES-trust-before-after.py                             # after (branch trust)
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading

import proxyproto
from proxyproto import (
    Policy,
    TrustedProxies,
    accept_datagram,
    blocking,
    decide_policy,
    encode_v1,
    encode_v2,
)

print("module:", proxyproto.__file__)
T = TrustedProxies(["127.0.0.2"])
H = encode_v2(("198.51.100.7", 1), ("192.0.2.1", 2), transport=socket.SOCK_DGRAM)


def show(label, f):
    try:
        print(label, "->", repr(f()))
    except BaseException as e:
        print(label, "-> raises", type(e).__name__, str(e)[:90])


show(
    "item1 decide_policy untrusted USE",
    lambda: decide_policy(("203.0.113.9", 1), None, trusted=T, untrusted_policy=Policy.USE),
)
show(
    "item1 accept_datagram untrusted USE",
    lambda: (
        accept_datagram(H, ("203.0.113.9", 1), None, trusted=T, untrusted_policy=Policy.USE)[
            0
        ].source
    ),
)
show("item2 host bits", lambda: "10.9.9.9" in TrustedProxies(["10.0.0.1/8"]))
show("item2 zone", lambda: TrustedProxies(["fe80::1%eth0"]))
show("item2 ::/0 mapped", lambda: "::ffff:10.0.0.1" in TrustedProxies(["::/0"]))
for d in (b"P", b"\r\n", b"PROXY"):
    show(
        f"item8 accept_datagram {d!r} USE",
        lambda d=d: accept_datagram(d, ("127.0.0.2", 1), None, trusted=T, policy=Policy.USE),
    )
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
r.settimeout(5)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.2", 0))


def broken(peer, local):
    raise ZeroDivisionError("policy bug")


s.sendto(H, r.getsockname())
show(
    "item6 recv_datagram broken callable",
    lambda: blocking.recv_datagram(r, trusted=T, policy=broken),
)
s.sendto(b"PROXY", r.getsockname())
show(
    "item8 recv_datagram b'PROXY' USE",
    lambda: blocking.recv_datagram(r, trusted=T, policy=Policy.USE)[:2],
)
# item 6: TLS-wrapped listener behind the mix-in
d = tempfile.mkdtemp()
cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
subprocess.run(
    [
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ],
    check=True,
    capture_output=True,
)


class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(list(self.client_address)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class Server(blocking.ProxyProtocolMixIn, http.server.ThreadingHTTPServer):
    pass


sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(cert, key)
cctx = ssl.create_default_context(cafile=cert)
srv = Server(("127.0.0.1", 0), Echo, trusted=T, header_timeout=2)
srv.socket = sctx.wrap_socket(srv.socket, server_side=True)
th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
th.start()


def tls_get():
    with (
        blocking.connect(
            srv.server_address,
            header=encode_v1(("203.0.113.8", 1000), srv.server_address),
            source_address=("127.0.0.2", 0),
            timeout=3,
        ) as raw,
        cctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return tls.recv(1000)[-30:]


show("item6 https mix-in", tls_get)
srv.shutdown()
th.join(5)
srv.server_close()
print("item6 mix-in stats", srv.proxy_stats)
