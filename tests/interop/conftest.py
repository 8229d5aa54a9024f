"""Session fixtures for the interop tests: programs, throwaway PKI, HAProxy and nginx.

One HAProxy process and one nginx process serve the whole session, each with one
``listen``/``server`` section per case, bound to ports picked at run time on loopback.
Each sending case forwards to its own :class:`~._harness.Sink` (a listening socket bound
to port 0 for the session), so every captured connection maps to exactly one case. The
HAProxy health checks get their own short-lived process (checks never stop arriving).
"""

from __future__ import annotations

import re
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest

from ._harness import (
    HAS_IPV6,
    IO_TIMEOUT,
    Address,
    Process,
    Sink,
    TCPAddress,
    find_program,
    pick_port,
    program_version,
    start_with_retries,
    unavailable,
)

NGINX_STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")
#: The server certificate's name: the SNI our TLS clients send, and a SAN of the cert.
SERVER_NAME = "pp-server.test"
#: The client certificate's CN (UTF-8 on purpose: the SSL_CN sub-TLV is UTF-8).
CLIENT_CN = "Zoë Interop Client"
#: The options HAProxy 2.6 knows for ``proxy-v2-options``.
ALL_V2_OPTIONS = "ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id"
#: Our UNIQUE_ID: client address and port, then frontend address and port.
UNIQUE_ID_FORMAT = '"%ci:%cp>%fi:%fp"'

HAPROXY_PREAMBLE = """\
global
    log stdout format raw local0 info
    nbthread 1
defaults
    mode tcp
    log global
    timeout connect 3s
    timeout client 10s
    timeout server 10s
"""


# ---------------------------------------------------------------------------------------
# Programs


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    """Path of ``haproxy``."""
    return find_program("haproxy")


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    """Path of ``nginx``; its stream module must be installed too."""
    path = find_program("nginx")
    if not NGINX_STREAM_MODULE.exists():
        unavailable(f"nginx's stream module is missing ({NGINX_STREAM_MODULE}; "
                    f"apt-get install libnginx-mod-stream)")
    return path


@pytest.fixture(scope="session")
def curl_bin() -> str:
    """Path of ``curl``."""
    return find_program("curl")


@pytest.fixture(scope="session")
def openssl_bin() -> str:
    """Path of ``openssl``."""
    return find_program("openssl")


@pytest.fixture(scope="session")
def peer_versions(haproxy_bin: str, nginx_bin: str, curl_bin: str, openssl_bin: str
                  ) -> dict[str, str]:
    """The version line of every peer, for the record (see ``test_versions``)."""
    return {
        "haproxy": program_version([haproxy_bin, "-v"]),
        "nginx": program_version([nginx_bin, "-v"]),
        "curl": program_version([curl_bin, "--version"]),
        "openssl": program_version([openssl_bin, "version"]),
        "python-ssl": ssl.OPENSSL_VERSION,
    }


@pytest.fixture(scope="session")
def interop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's scratch directory (configs, logs, sockets, certificates)."""
    return tmp_path_factory.mktemp("interop")


# ---------------------------------------------------------------------------------------
# Throwaway PKI


@dataclass(frozen=True)
class PKI:
    """A CA, a server certificate (RSA-2048) and a client certificate, made for this run."""

    ca: Path
    server_cert: Path
    server_key: Path
    server_pem: Path  # certificate then key, as HAProxy's ``crt`` wants
    client_cert: Path
    client_key: Path
    #: A self-signed client certificate (not from our CA) and what ``openssl verify``
    #: says of it against our CA (the X509_V_ERR code HAProxy should report).
    rogue_cert: Path
    rogue_key: Path
    rogue_verify_error: int
    #: The server certificate's key and signature algorithms, named as HAProxy's
    #: ``cert-key`` and ``cert-sig`` options name them (from ``openssl x509 -text``).
    server_key_alg: str
    server_sig_alg: str

    def client_context(self, *, certificate: Optional[str] = "client", alpn: tuple[str, ...] = (),
                       max_version: Optional[ssl.TLSVersion] = None, sni: bool = True
                       ) -> ssl.SSLContext:
        """A TLS client context that trusts our CA, with a client certificate
        (``"client"``: ours, ``"rogue"``: the self-signed one, ``None``: none)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca)
        context.check_hostname = sni
        if certificate == "client":
            context.load_cert_chain(self.client_cert, self.client_key)
        elif certificate == "rogue":
            context.load_cert_chain(self.rogue_cert, self.rogue_key)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        if max_version is not None:
            context.maximum_version = max_version
        return context

    def server_context(self) -> ssl.SSLContext:
        """The TLS server context of our own servers (TLS after the header)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


def _openssl(openssl: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def _haproxy_cert_names(text: str) -> tuple[str, str]:
    """HAProxy's names for a certificate's key algorithm (``RSA2048``) and signature
    algorithm (the OpenSSL short name, ``RSA-SHA256``), from ``openssl x509 -text``."""
    key = re.search(r"Public Key Algorithm: (\S+)", text)
    bits = re.search(r"Public-Key: \((\d+) bit\)", text)
    sig = re.search(r"Signature Algorithm: (\S+)", text)
    assert key and bits and sig, text
    key_names = {"rsaEncryption": "RSA", "id-ecPublicKey": "EC", "dsaEncryption": "DSA"}
    short_name = ssl._ASN1Object.fromname(sig[1]).shortname  # long name -> short name
    return f"{key_names[key[1]]}{bits[1]}", short_name


@pytest.fixture(scope="session")
def pki(openssl_bin: str, interop_dir: Path) -> PKI:
    """Generate the throwaway PKI with ``openssl`` (never committed, never reused)."""
    home = interop_dir / "pki"
    home.mkdir()
    run = lambda *args: _openssl(openssl_bin, *args, cwd=home)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.crt", "-days", "2", "-subj", "/CN=proxyproto interop CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    (home / "srv.ext").write_text(
        f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1,IP:::1\n"
        "extendedKeyUsage=serverAuth\n")
    (home / "cli.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in (("srv", f"/CN={SERVER_NAME}"),
                          ("cli", f"/O=proxyproto tests/CN={CLIENT_CN}")):
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr", "-utf8", "-subj", subject)
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-sha256",
            "-extfile", f"{name}.ext")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "rogue.key", "-out", "rogue.crt", "-days", "2",
        "-subj", "/CN=rogue interop client", "-addext", "extendedKeyUsage=clientAuth")
    verdict = subprocess.run([openssl_bin, "verify", "-CAfile", "ca.crt", "rogue.crt"],
                             cwd=home, capture_output=True, text=True, timeout=60, check=False)
    rogue_error = re.search(r"error (\d+) at", verdict.stdout + verdict.stderr)
    assert verdict.returncode != 0 and rogue_error, verdict
    (home / "srv.pem").write_text((home / "srv.crt").read_text() + (home / "srv.key").read_text())
    key_alg, sig_alg = _haproxy_cert_names(run("x509", "-in", "srv.crt", "-noout", "-text"))
    return PKI(ca=home / "ca.crt", server_cert=home / "srv.crt", server_key=home / "srv.key",
               server_pem=home / "srv.pem",
               client_cert=home / "cli.crt", client_key=home / "cli.key",
               rogue_cert=home / "rogue.crt", rogue_key=home / "rogue.key",
               rogue_verify_error=int(rogue_error[1]),
               server_key_alg=key_alg, server_sig_alg=sig_alg)


# ---------------------------------------------------------------------------------------
# Running servers


@dataclass
class Peer:
    """A running real server: its frontends (by case name) and the sinks it forwards to."""

    process: Process
    log: Path
    frontends: dict[str, Address] = field(default_factory=dict)
    sinks: dict[str, Sink] = field(default_factory=dict)

    def log_size(self) -> int:
        """The log's current size, to read only what a test adds after it."""
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        """What the log gained since ``offset``."""
        with open(self.log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")


def run_peer(start: Callable[[], Peer], sinks: dict[str, Sink]) -> Iterator[Peer]:
    """Start a peer (retrying with fresh ports), yield it, then stop it and close its sinks."""
    try:
        peer = start_with_retries(start)
        try:
            yield peer
        finally:
            peer.process.stop()
    finally:
        for sink in sinks.values():
            sink.close()


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class SenderCase:
    """One HAProxy ``listen`` section that sends a header to a sink."""

    name: str
    bind: str  # "127.0.0.1", "::1", "::ffff:127.0.0.1" or "unix"
    server: str  # the header options on the server line
    bind_options: str = ""
    lines: tuple[str, ...] = ()


def haproxy_sender_cases(pki: PKI) -> list[SenderCase]:
    """Every case where HAProxy is the sender (our parser receives)."""
    tls = (f"ssl crt {pki.server_pem} ca-file {pki.ca} verify optional alpn h2,http/1.1")
    cases = [
        SenderCase("v1_ipv4", "127.0.0.1", "send-proxy"),
        SenderCase("v2_ipv4", "127.0.0.1", "send-proxy-v2"),
        SenderCase("v1_mapped", "::ffff:127.0.0.1", "send-proxy"),
        SenderCase("v2_mapped", "::ffff:127.0.0.1", "send-proxy-v2"),
        SenderCase("v1_unix", "unix", "send-proxy"),
        SenderCase("v2_unix", "unix", "send-proxy-v2"),
        SenderCase("relay_to_v1", "127.0.0.1", "send-proxy", "accept-proxy"),
        SenderCase("relay_to_v2", "127.0.0.1", "send-proxy-v2", "accept-proxy"),
        SenderCase("relay_tlvs", "127.0.0.1",
                   "send-proxy-v2 proxy-v2-options authority,unique-id,crc32c", "accept-proxy",
                   ('unique-id-format "%[fc_pp_unique_id]"',)),
        SenderCase("plain_all", "127.0.0.1", f"send-proxy-v2 proxy-v2-options {ALL_V2_OPTIONS}",
                   lines=(f"unique-id-format {UNIQUE_ID_FORMAT}",)),
        SenderCase("tls_ssl", "127.0.0.1", "send-proxy-v2-ssl", tls),
        SenderCase("tls_ssl_cn", "127.0.0.1", "send-proxy-v2-ssl-cn", tls),
        SenderCase("tls_all", "127.0.0.1", f"send-proxy-v2 proxy-v2-options {ALL_V2_OPTIONS}",
                   tls, (f"unique-id-format {UNIQUE_ID_FORMAT}",)),
        SenderCase("tls_ignore_err", "127.0.0.1", "send-proxy-v2-ssl-cn",
                   f"{tls} ca-ignore-err all crt-ignore-err all"),
        # the header in clear, then TLS to the backend: our servers' TLS-after-header
        SenderCase("tls_backend", "127.0.0.1",
                   f"send-proxy-v2 ssl verify required ca-file {pki.ca} sni str({SERVER_NAME})"),
    ]
    if HAS_IPV6:
        cases += [SenderCase("v1_ipv6", "::1", "send-proxy"),
                  SenderCase("v2_ipv6", "::1", "send-proxy-v2")]
    return cases


#: The accept-proxy frontend that echoes what HAProxy decoded (our encoder's receiver).
#: Each field is bracketed, so an empty value still shows.
HAPROXY_ECHO = (
    "[%[src]] [%[src_port]] [%[dst]] [%[dst_port]] [%[fc_rcvd_proxy]] "
    "[%[fc_pp_authority]] [%[fc_pp_unique_id]]\\n"
)
#: The same, behind TLS (TLS after the header), with what HAProxy saw of the TLS.
HAPROXY_TLS_ECHO = (
    "[%[src]] [%[src_port]] [%[dst]] [%[dst_port]] [%[ssl_fc]] [%[ssl_fc_sni]]\\n"
)


def start_haproxy(haproxy_bin: str, run_dir: Path, pki: PKI, sinks: dict[str, Sink]) -> Peer:
    """Write the sender/receiver configuration with fresh ports and start HAProxy."""
    frontends: dict[str, Address] = {}
    tcp: list[TCPAddress] = []

    def listen(name: str, host: str = "127.0.0.1") -> str:
        # an IPv4-mapped address shares the IPv4 port space: pick the port there
        port = pick_port("127.0.0.1" if host.startswith("::ffff:") else host)
        frontends[name] = (host, port)
        tcp.append((host, port))
        return _bind(host, port)

    sections = [HAPROXY_PREAMBLE]
    for case in haproxy_sender_cases(pki):
        if case.bind == "unix":
            path = run_dir / f"{case.name}.sock"
            path.unlink(missing_ok=True)
            frontends[case.name] = str(path)
            bind = f"unix@{path} mode 600"
        else:
            bind = listen(case.name, case.bind)
        body = [f"listen {case.name}", f"    bind {bind} {case.bind_options}".rstrip(),
                *(f"    {line}" for line in case.lines),
                f"    server sink {sinks[case.name].config_address} {case.server}"]
        sections.append("\n".join(body) + "\n")
    sections.append(f"""\
frontend echo
    mode http
    bind {listen("echo")} accept-proxy
    timeout http-request 5s
    log-format "ok [%ci] [%cp] [%fi] [%fp] [%[fc_rcvd_proxy]] [%[fc_pp_authority]]"
    error-log-format "fail [%[fc_err]] [%[fc_err_str]]"
    http-request return status 200 content-type text/plain lf-string "{HAPROXY_ECHO}"
""")
    sections.append(f"""\
frontend echo_tls
    mode http
    bind {listen("echo_tls")} accept-proxy ssl crt {pki.server_pem} alpn http/1.1
    timeout http-request 5s
    http-request return status 200 content-type text/plain lf-string "{HAPROXY_TLS_ECHO}"
""")
    config = run_dir / "haproxy.cfg"
    config.write_text("".join(sections))
    check = subprocess.run([haproxy_bin, "-c", "-f", str(config)], capture_output=True,
                           text=True, timeout=IO_TIMEOUT, check=False)
    assert check.returncode == 0, f"haproxy -c rejected {config}:\n{check.stdout}{check.stderr}"
    log = run_dir / "haproxy.log"
    process = Process([haproxy_bin, "-db", "-f", str(config)], log)
    unix = [Path(p) for p in frontends.values() if isinstance(p, str)]
    try:
        process.wait_ready(tcp, unix)
    except BaseException:
        process.stop()
        raise
    return Peer(process, log, frontends, sinks)


@pytest.fixture(scope="session")
def haproxy(haproxy_bin: str, interop_dir: Path, pki: PKI) -> Iterator[Peer]:
    """One HAProxy for the session: every sending case plus the ``echo`` receiver."""
    run_dir = interop_dir / "haproxy"
    run_dir.mkdir()
    sinks = {case.name: Sink("127.0.0.1") for case in haproxy_sender_cases(pki)}
    yield from run_peer(lambda: start_haproxy(haproxy_bin, run_dir, pki, sinks), sinks)


#: The health-check backends: the check interval is short so a test need not wait long.
HEALTH_CHECK_CASES = {
    "check_v1": "send-proxy",
    "check_v2": "send-proxy-v2",
    "check_v2_crc": "send-proxy-v2 proxy-v2-options crc32c",
}


@pytest.fixture(scope="module")
def haproxy_checks(haproxy_bin: str, interop_dir: Path) -> Iterator[Peer]:
    """A HAProxy whose only job is health-checking sinks (LOCAL headers, v1 TCP4)."""
    run_dir = interop_dir / "checks"
    run_dir.mkdir(exist_ok=True)
    sinks = {name: Sink("127.0.0.1") for name in HEALTH_CHECK_CASES}
    # HAProxy refuses to start without a listener: give it one that nobody uses
    idle = run_dir / "idle.sock"
    idle.unlink(missing_ok=True)
    sections = [HAPROXY_PREAMBLE, f"frontend idle\n    bind unix@{idle} mode 600\n"
                                  f"    tcp-request connection reject\n"]
    for name, options in HEALTH_CHECK_CASES.items():
        sections.append(f"backend {name}\n"
                        f"    server sink {sinks[name].config_address} check inter 300ms "
                        f"{options}\n")
    config = run_dir / "haproxy.cfg"
    config.write_text("".join(sections))
    log = run_dir / "haproxy.log"
    process = Process([haproxy_bin, "-db", "-f", str(config)], log)
    try:
        process.wait_ready(unix=[idle])
        yield Peer(process, log, {}, sinks)
    finally:
        process.stop()
        for sink in sinks.values():
            sink.close()


NGINX_SENDERS = ("nginx_v4", "nginx_v6", "nginx_unix", "nginx_relay")


def start_nginx(nginx_bin: str, run_dir: Path, sinks: dict[str, Sink]) -> Peer:
    """Write the nginx configuration with fresh ports and start nginx in the foreground."""
    frontends: dict[str, Address] = {}
    tcp: list[TCPAddress] = []

    def listen(name: str, host: str) -> str:
        port = pick_port(host)
        frontends[name] = (host, port)
        tcp.append((host, port))
        return _bind(host, port)

    unix_path = run_dir / "nginx_unix.sock"
    unix_path.unlink(missing_ok=True)
    frontends["nginx_unix"] = str(unix_path)
    proxied = "proxy_protocol on; proxy_connect_timeout 3s; proxy_timeout 10s;"
    servers = [
        f"server {{ listen {listen('nginx_v4', '127.0.0.1')}; "
        f"proxy_pass {sinks['nginx_v4'].config_address}; {proxied} }}",
        f"server {{ listen unix:{unix_path}; "
        f"proxy_pass {sinks['nginx_unix'].config_address}; {proxied} }}",
        f"server {{ listen {listen('nginx_relay', '127.0.0.1')} proxy_protocol; "
        f"set_real_ip_from 127.0.0.0/8; "
        f"proxy_pass {sinks['nginx_relay'].config_address}; {proxied} }}",
        f"server {{ listen {listen('stream_echo', '127.0.0.1')} proxy_protocol; "
        f"proxy_protocol_timeout 5s; return \"{NGINX_ECHO}\"; }}",
    ]
    if HAS_IPV6:
        servers.append(f"server {{ listen {listen('nginx_v6', '::1')}; "
                       f"proxy_pass {sinks['nginx_v6'].config_address}; {proxied} }}")
    http_echo = listen("http_echo", "127.0.0.1")
    config = run_dir / "nginx.conf"
    config.write_text(f"""\
load_module {NGINX_STREAM_MODULE};
worker_processes 1;
pid nginx.pid;
error_log error.log notice;
events {{ worker_connections 64; }}
stream {{
    {(chr(10) + '    ').join(servers)}
}}
http {{
    access_log off;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    client_header_timeout 5s;
    server {{
        listen {http_echo} proxy_protocol;
        location / {{ return 200 "{NGINX_ECHO}"; }}
    }}
}}
""")
    (run_dir / "tmp").mkdir(exist_ok=True)
    argv = [nginx_bin, "-p", f"{run_dir}/", "-c", str(config), "-e", str(run_dir / "error.log")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, timeout=IO_TIMEOUT,
                           check=False)
    assert check.returncode == 0, f"nginx -t rejected {config}:\n{check.stderr}"
    process = Process([*argv, "-g", "daemon off;"], run_dir / "nginx.out")
    try:
        process.wait_ready(tcp, [unix_path])
    except BaseException:
        process.stop()
        raise
    return Peer(process, run_dir / "error.log", frontends, sinks)


#: What nginx echoes of the header it decoded (bracketed, so empty values show).
NGINX_ECHO = ("[$proxy_protocol_addr] [$proxy_protocol_port] [$proxy_protocol_server_addr] "
              "[$proxy_protocol_server_port]\\n")


@pytest.fixture(scope="session")
def nginx(nginx_bin: str, interop_dir: Path) -> Iterator[Peer]:
    """One nginx for the session: stream senders, a relay and two echo receivers."""
    run_dir = interop_dir / "nginx"
    run_dir.mkdir()
    sinks = {name: Sink("127.0.0.1") for name in NGINX_SENDERS}
    yield from run_peer(lambda: start_nginx(nginx_bin, run_dir, sinks), sinks)


@pytest.fixture(scope="session")
def curl_sinks(interop_dir: Path) -> Iterator[dict[str, Sink]]:
    """Sinks that curl connects to directly: IPv4, IPv6 (when available) and UNIX."""
    sinks = {"ipv4": Sink("127.0.0.1"), "unix": Sink(path=interop_dir / "curl.sock")}
    if HAS_IPV6:
        sinks["ipv6"] = Sink("::1")
    try:
        yield sinks
    finally:
        for sink in sinks.values():
            sink.close()
