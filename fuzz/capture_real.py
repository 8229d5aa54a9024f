#!/usr/bin/env python3
"""Capture real senders' headers (HAProxy, curl) on loopback as fuzz seeds.

Starts a capture listener and an HAProxy (``haproxy`` on PATH) that forwards to it with
``send-proxy`` / ``send-proxy-v2`` (TLS frontend with ALPN and SNI, so the v2 header
carries CRC32C, ALPN, AUTHORITY, UNIQUE_ID and SSL TLVs; an IPv6 frontend; LOCAL health
checks), and runs ``curl --haproxy-protocol`` against it. Each capture (the header and
the first payload bytes after it) is written to ``fuzz/corpus/parse/<sender>-<what>.bin``.

Addresses and ports change from run to run; the seeds are only inputs for the fuzzer, so
that is fine. Nothing is written unless every capture parses.

    python3 fuzz/capture_real.py            # needs haproxy, curl and openssl
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import proxyproto  # noqa: E402


class Capture:
    """A listener that keeps the first bytes of every connection (until EOF or silence)."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.captures: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(0.5)
                data = b""
                try:
                    while len(data) < 65536:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                except OSError:  # silence, or a reset (health checks close with an RST)
                    pass
                if data:
                    self.captures.append(data)

    def wait(self, count: int, limit: float = 10.0) -> list[bytes]:
        """Wait until ``count`` captures arrived (bounded), return them all."""
        deadline = time.monotonic() + limit
        while len(self.captures) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} captures expected, {len(self.captures)} arrived")
            time.sleep(0.05)
        return list(self.captures)

    def close(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def haproxy_config(tmp: str, cap: int, cap6: int, ports: dict[str, int]) -> str:
    """A config with one frontend per kind of header to capture."""
    return f"""
global
    maxconn 100
defaults
    mode tcp
    timeout connect 2s
    timeout client 5s
    timeout server 5s
    timeout check 1s
frontend tls
    bind 127.0.0.1:{ports['tls']} ssl crt {tmp}/site.pem alpn h2,http/1.1
    unique-id-format %{{+X}}o%ci%cp%fi%fp%Ts%rt
    default_backend v2_tls
backend v2_tls
    server s 127.0.0.1:{cap} send-proxy-v2 \
proxy-v2-options ssl,crc32c,unique-id,authority,ssl-cipher,cert-sig,cert-key
frontend v1
    bind 127.0.0.1:{ports['v1']}
    default_backend v1
backend v1
    server s 127.0.0.1:{cap} send-proxy
frontend v2_6
    bind [::1]:{ports['v2_6']}
    default_backend v2_6
backend v2_6
    server s [::1]:{cap6} send-proxy-v2
frontend v1_6
    bind [::1]:{ports['v1_6']}
    default_backend v1_6
backend v1_6
    server s [::1]:{cap6} send-proxy
"""


def health_config(cap: int, listen: int) -> str:
    """A backend whose health checks send v2 LOCAL headers with a CRC32C."""
    return f"""
global
    maxconn 10
defaults
    mode tcp
    timeout connect 1s
    timeout client 2s
    timeout server 2s
    timeout check 1s
listen checked
    bind 127.0.0.1:{listen}
    option tcp-check
    server s 127.0.0.1:{cap} send-proxy-v2 proxy-v2-options crc32c check check-send-proxy \
inter 300
"""


def main() -> int:
    """Capture, check, write."""
    for tool in ("haproxy", "openssl", "curl"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: nothing captured", file=sys.stderr)
            return 1
    seeds: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
             "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem", "-subj", "/CN=example.com"],
            check=True, capture_output=True, timeout=60)
        with open(f"{tmp}/site.pem", "wb") as pem:
            for name in ("cert.pem", "key.pem"):
                with open(f"{tmp}/{name}", "rb") as part:
                    pem.write(part.read())
        cap, cap6 = Capture(), Capture(socket.AF_INET6, "::1")
        ports = {name: free_port("::1" if name.endswith("6") else "127.0.0.1")
                 for name in ("tls", "v1", "v2_6", "v1_6")}
        with open(f"{tmp}/haproxy.cfg", "w") as cfg:
            cfg.write(haproxy_config(tmp, cap.port, cap6.port, ports))
        proc = subprocess.Popen(["haproxy", "-f", f"{tmp}/haproxy.cfg", "-db"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["h2"])
            with socket.create_connection(("127.0.0.1", ports["tls"]), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="example.com") as tls:
                tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                seeds["haproxy-v2-tls-tlvs"] = cap.wait(1)[-1]
            for name, host, capture in (("v1", "127.0.0.1", cap), ("v2_6", "::1", cap6),
                                        ("v1_6", "::1", cap6)):
                before = len(capture.captures)
                with socket.create_connection((host, ports[name]), timeout=5) as plain:
                    plain.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
                    seeds[f"haproxy-{name.replace('_', '-tcp')}"] = capture.wait(before + 1)[-1]
        finally:
            proc.terminate()
            proc.wait(10)
        with open(f"{tmp}/health.cfg", "w") as cfg:
            cfg.write(health_config(cap.port, free_port()))
        before = len(cap.captures)
        proc = subprocess.Popen(["haproxy", "-f", f"{tmp}/health.cfg", "-db"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            seeds["haproxy-v2-health-local-crc32c"] = cap.wait(before + 1)[-1]
        finally:
            proc.terminate()
            proc.wait(10)
        before = len(cap.captures)
        subprocess.run(["curl", "-s", "-m", "2", "--haproxy-protocol",
                        f"http://127.0.0.1:{cap.port}/"], capture_output=True, timeout=30)
        seeds["curl-v1-tcp4"] = cap.wait(before + 1)[-1]
        cap.close()
        cap6.close()
    for name, data in seeds.items():
        header = proxyproto.parse(data)  # every capture must parse
        print(f"{name}: {header!r:.160} (+{len(data) - header.length} payload bytes)")
    folder = os.path.join(HERE, "corpus", "parse")
    for name, data in seeds.items():
        with open(os.path.join(folder, f"{name}.bin"), "wb") as handle:
            handle.write(data)
    print(f"wrote {len(seeds)} seeds to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
