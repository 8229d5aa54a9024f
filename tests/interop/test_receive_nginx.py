"""Our parser and servers receive what nginx's stream module sends (``proxy_protocol on``,
v1 only in nginx 1.22): IPv4, IPv6 and UNIX-socket clients, and nginx as a relay."""

from __future__ import annotations

import socket

import pytest

import proxyproto
from proxyproto import Command

from ._harness import (
    CLIENT_V4,
    all_modes,
    check_adapter_view,
    exchange,
    needs_ipv6,
    receive,
    refused_everywhere,
)
from .conftest import Peer

pytestmark = pytest.mark.interop


def send_to(peer: Peer, name: str, prefix: bytes = b""):  # type: ignore[no-untyped-def]
    """A client that sends ``prefix`` and its payload to frontend ``name``."""
    return lambda payload: exchange(peer.frontends[name], payload, prefix=prefix)


@all_modes
def test_ipv4_client(nginx: Peer, mode: str) -> None:
    header, received, client = receive(nginx.sinks["nginx_v4"], mode, send_to(nginx, "nginx_v4"))
    assert (header.version, header.command, header.family) == (1, Command.PROXY, socket.AF_INET)
    assert header.source == client.sockname and header.source[0] == CLIENT_V4
    assert header.destination == client.peername == nginx.frontends["nginx_v4"]
    check_adapter_view(received, nginx.sinks["nginx_v4"])


@needs_ipv6
@all_modes
def test_ipv6_client(nginx: Peer, mode: str) -> None:
    header, received, client = receive(nginx.sinks["nginx_v6"], mode, send_to(nginx, "nginx_v6"))
    assert (header.version, header.family) == (1, socket.AF_INET6)
    assert header.source == client.sockname[:2]
    assert header.destination == client.peername[:2] == nginx.frontends["nginx_v6"]
    check_adapter_view(received, nginx.sinks["nginx_v6"])


@all_modes
def test_unix_socket_client(nginx: Peer, mode: str) -> None:
    """No IP addresses: nginx sends ``PROXY UNKNOWN\\r\\n``."""
    header, received, _ = receive(nginx.sinks["nginx_unix"], mode,
                                  send_to(nginx, "nginx_unix"))
    assert (header.version, header.family, header.source, header.destination) == (
        1, socket.AF_UNSPEC, None, None)
    assert header.length == len(b"PROXY UNKNOWN\r\n")
    check_adapter_view(received, nginx.sinks["nginx_unix"])


@all_modes
@pytest.mark.parametrize("version_in", [1, 2])
def test_relay_takes_the_source_but_writes_its_own_destination(nginx: Peer, mode: str,
                                                               version_in: int) -> None:
    """nginx as a relay (``listen ... proxy_protocol`` + realip + ``proxy_protocol on``):
    the source comes from the header it received, the destination is its own listener."""
    source, destination = ("192.0.2.1", 51000), ("198.51.100.2", 443)
    prefix = (proxyproto.encode_v1(source, destination) if version_in == 1
              else proxyproto.encode_v2(source, destination))
    header, received, client = receive(nginx.sinks["nginx_relay"], mode,
                                       send_to(nginx, "nginx_relay", prefix))
    assert (header.version, header.family) == (1, socket.AF_INET)
    assert header.source == source
    assert header.destination == client.peername == nginx.frontends["nginx_relay"]
    assert header.destination != destination
    check_adapter_view(received, nginx.sinks["nginx_relay"])


@all_modes
def test_relay_mixing_families_is_refused(nginx: Peer, mode: str) -> None:
    """An IPv6 client relayed by an IPv4 listener: nginx writes ``TCP6`` with an IPv4
    destination. That line breaks the spec; our parser and servers refuse it."""
    prefix = proxyproto.encode_v1(("2001:db8::1", 51000), ("2001:db8::2", 443))
    received, client = refused_everywhere(nginx.sinks["nginx_relay"], mode,
                                          send_to(nginx, "nginx_relay", prefix))
    if mode == "raw":
        line = received.raw.split(b"\r\n", 1)[0] if received.raw else b""
        port = nginx.frontends["nginx_relay"][1]
        assert line == b"PROXY TCP6 2001:db8::1 127.0.0.1 51000 %d" % port
    else:
        assert client.reply == b""
