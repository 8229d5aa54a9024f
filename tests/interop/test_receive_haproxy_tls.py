"""HAProxy terminates TLS and sends what it learnt in v2 TLVs: ALPN, AUTHORITY (the SNI),
UNIQUE_ID, CRC32C and the SSL TLV with its sub-TLVs.

Every expected value comes from the client side: the TLS version, cipher and ALPN the
Python client negotiated, the SNI it sent, the CN we put in its certificate, the server
certificate's algorithms as ``openssl x509 -text`` reads them, and ``openssl verify``'s
verdict on a self-signed client certificate.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Callable, Optional

import pytest

from proxyproto import Command, ProxyHeader, SSLClient, SSLInfo, SSLSubtype, TLVType

from ._harness import (
    ClientResult,
    all_modes,
    check_adapter_view,
    exchange,
    receive,
    tls_exchange,
)
from .conftest import CLIENT_CN, PKI, SERVER_NAME, Peer
from .test_receive_haproxy import unique_id

pytestmark = pytest.mark.interop


@dataclass(frozen=True)
class TLSClient:
    """How a test client connects: its certificate, ALPN offer, SNI and TLS version."""

    certificate: Optional[str]  # "client" (from our CA), "rogue" (self-signed) or None
    alpn: tuple[str, ...]
    sni: bool
    max_version: Optional[ssl.TLSVersion] = None

    def sender(self, peer: Peer, pki: PKI, name: str) -> Callable[[bytes], ClientResult]:
        """A function sending a payload over TLS to frontend ``name``."""
        context = pki.client_context(certificate=self.certificate, alpn=self.alpn,
                                     max_version=self.max_version, sni=self.sni)
        hostname = SERVER_NAME if self.sni else None
        address = peer.frontends[name]
        assert isinstance(address, tuple)
        return lambda payload: tls_exchange(address, payload, context, hostname)


CLIENTS = {
    "tls1.3-cert-h2-sni": TLSClient("client", ("h2", "http/1.1"), True),
    "tls1.2-cert-http1.1-sni": TLSClient("client", ("http/1.1",), True, ssl.TLSVersion.TLSv1_2),
    "tls1.3-anonymous": TLSClient(None, (), False),
    "tls1.2-anonymous-h2": TLSClient(None, ("h2",), False, ssl.TLSVersion.TLSv1_2),
}
clients = pytest.mark.parametrize("variant", sorted(CLIENTS))


def common_checks(header: ProxyHeader, client: ClientResult, variant: TLSClient) -> None:
    """What every TLS case shares: addresses, ALPN, the SSL TLV's flags and version."""
    assert (header.version, header.command, header.family) == (2, Command.PROXY,
                                                               socket.AF_INET)
    assert header.source == client.sockname
    assert header.destination == client.peername
    expected_version = "TLSv1.2" if variant.max_version == ssl.TLSVersion.TLSv1_2 else "TLSv1.3"
    assert client.tls_version == expected_version
    assert header.alpn == (client.alpn.encode() if client.alpn else None)
    if variant.alpn:
        assert client.alpn == variant.alpn[0]
    info = header.ssl
    assert info is not None
    with_cert = variant.certificate is not None
    assert info.client == (SSLClient.SSL | SSLClient.CERT_CONN | SSLClient.CERT_SESS
                           if with_cert else SSLClient.SSL)
    assert info.client_ssl
    assert info.version == client.tls_version


def tls_case(haproxy: Peer, pki: PKI, name: str, mode: str, tls: TLSClient
             ) -> tuple[ProxyHeader, SSLInfo, ClientResult]:
    """One TLS connection through frontend ``name`` into ``mode``'s server, with the
    checks every TLS case shares; returns the header, its SSL TLV and the client."""
    header, received, client = receive(haproxy.sinks[name], mode,
                                       tls.sender(haproxy, pki, name))
    common_checks(header, client, tls)
    check_adapter_view(received, haproxy.sinks[name])
    info = header.ssl
    assert info is not None
    return header, info, client


@all_modes
@clients
def test_send_proxy_v2_ssl(haproxy: Peer, pki: PKI, mode: str, variant: str) -> None:
    """``send-proxy-v2-ssl``: ALPN (when negotiated) and SSL with the VERSION sub-TLV."""
    tls = CLIENTS[variant]
    header, info, _ = tls_case(haproxy, pki, "tls_ssl", mode, tls)
    expected = ([TLVType.ALPN] if tls.alpn else []) + [TLVType.SSL]
    assert [tlv.type for tlv in header.tlvs] == expected
    assert [sub.type for sub in info.sub_tlvs] == [SSLSubtype.VERSION]
    assert info.verify == 0 and info.verified == (tls.certificate is not None)


@all_modes
@clients
def test_send_proxy_v2_ssl_cn(haproxy: Peer, pki: PKI, mode: str, variant: str) -> None:
    """``send-proxy-v2-ssl-cn``: as above, plus the client certificate's CN (UTF-8)."""
    tls = CLIENTS[variant]
    _, info, _ = tls_case(haproxy, pki, "tls_ssl_cn", mode, tls)
    if tls.certificate is None:
        assert [sub.type for sub in info.sub_tlvs] == [SSLSubtype.VERSION]
        assert info.cn is None
    else:
        assert [sub.type for sub in info.sub_tlvs] == [SSLSubtype.VERSION, SSLSubtype.CN]
        assert info.cn == CLIENT_CN
    assert info.verify == 0


@all_modes
@clients
def test_every_proxy_v2_option(haproxy: Peer, pki: PKI, mode: str, variant: str) -> None:
    """``proxy-v2-options`` with all eight options HAProxy 2.6 has."""
    tls = CLIENTS[variant]
    header, info, client = tls_case(haproxy, pki, "tls_all", mode, tls)
    expected = [TLVType.CRC32C]
    expected += [TLVType.ALPN] if tls.alpn else []
    expected += [TLVType.AUTHORITY] if tls.sni else []
    expected += [TLVType.UNIQUE_ID, TLVType.SSL]
    assert [tlv.type for tlv in header.tlvs] == expected
    assert header.crc32c is not None  # and parse verified it
    assert header.authority == (SERVER_NAME if tls.sni else None)
    assert header.unique_id == unique_id(client)
    subs = [SSLSubtype.VERSION] + ([SSLSubtype.CN] if tls.certificate else [])
    subs += [SSLSubtype.KEY_ALG, SSLSubtype.SIG_ALG, SSLSubtype.CIPHER]
    assert [sub.type for sub in info.sub_tlvs] == subs
    assert info.cn == (CLIENT_CN if tls.certificate else None)
    assert info.cipher == client.cipher
    assert info.key_alg == pki.server_key_alg  # the frontend's own certificate
    assert info.sig_alg == pki.server_sig_alg
    assert (info.group, info.sig_scheme, info.client_cert) == (None, None, None)  # not in 2.6


@all_modes
def test_unverified_client_certificate(haproxy: Peer, pki: PKI, mode: str) -> None:
    """A self-signed client certificate let through (``crt-ignore-err all``): the SSL
    TLV's ``verify`` is the X509 error ``openssl verify`` reports, so not verified."""
    tls = TLSClient("rogue", ("h2",), True)
    _, info, _ = tls_case(haproxy, pki, "tls_ignore_err", mode, tls)
    assert info.verify == pki.rogue_verify_error != 0
    assert info.cn == "rogue interop client"
    assert info.client_cert_conn and not info.verified


@pytest.mark.parametrize("mode", ["blocking", "aio"])
def test_tls_after_the_header(haproxy: Peer, pki: PKI, mode: str) -> None:
    """HAProxy sends the header in clear, then TLS to our server (``server ... ssl``):
    our servers read exactly the header and hand the rest to TLS.

    The payload spans many TLS records, and the exchange is repeated, so that several
    records arrive while the TLS handshake completes: this caught an asyncio pitfall
    (a BufferedProtocol whose buffer is a bytearray loses every record after the first).
    """
    name = "tls_backend"
    for _ in range(4):
        header, received, client = receive(
            haproxy.sinks[name], mode,
            lambda payload: exchange(haproxy.frontends[name], payload),
            tls=pki.server_context(), size=256 * 1024)
        assert (header.version, header.command) == (2, Command.PROXY)
        assert (header.source, header.destination) == (client.sockname, client.peername)
        check_adapter_view(received, haproxy.sinks[name])
