"""The contract surface (shared/api-contract.md): public names, the exception tree,
``ProxyHeader`` (immutable, hashable, ``==`` by value, typed accessors), IMPLEMENTATION;
plus the deployment and security rules the sans-IO layer can show (R-2, R-10..R-12,
R-61, R-62, A-19), and a check that every rule of the checklist has its test.
"""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import os
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import proxyproto
from cases import VALID, Valid, case_id, v2
from proxyproto import (
    TLV,
    ChecksumMismatch,
    Command,
    HeaderReader,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    Policy,
    PolicyViolation,
    ProxyHeader,
    ProxyProtocolError,
    SSLInfo,
    TrustedProxies,
    UntrustedPeer,
)
from proxyproto._policy import decide_policy

TESTS = Path(__file__).parent


def test_contract_names_are_public() -> None:
    names = ["parse", "encode_v1", "encode_v2", "ProxyHeader", "ProxyProtocolError",
             "IncompleteHeader", "NoProxyHeader", "InvalidHeader", "IMPLEMENTATION",
             "TrustedProxies", "Policy", "Command"]
    for name in names:
        assert hasattr(proxyproto, name), name
        assert name in proxyproto.__all__, name
    for name in proxyproto.__all__:
        assert hasattr(proxyproto, name), name
    assert {p.name for p in Policy} >= {"REQUIRE", "USE", "IGNORE", "REJECT", "SKIP"}
    assert (Command.LOCAL, Command.PROXY) == (0, 1)


def test_top_level_is_the_wire_values_errors_and_trust() -> None:
    """Internals stay out of ``__all__``; the adapter writers' names are in
    ``proxyproto.policy``, and their old top-level spelling still works with a warning."""
    import warnings

    import proxyproto.policy

    internals = {"PolicyReader", "decide_policy", "apply_policy", "accept_datagram",
                 "resolve_addresses", "ConnectionPolicy", "DEFAULT_MAX_SIZE",
                 "DEFAULT_TIMEOUT", "ProxyOptions", "decide_start"}
    assert not internals & set(proxyproto.__all__)
    assert internals <= set(proxyproto.policy.__all__)
    for name in internals - {"ProxyOptions", "decide_start"}:
        with pytest.warns(DeprecationWarning, match=f"proxyproto.policy.{name}"):
            moved = getattr(proxyproto, name)
        assert moved is getattr(proxyproto.policy, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError):
            proxyproto.ProxyOptions  # noqa: B018
    for name in proxyproto.__all__:  # every public name has a docstring or is a constant
        value = getattr(proxyproto, name)
        assert value.__doc__ or isinstance(value, (str, bytes, int, tuple)) or name.endswith(
            "Address"), name


def test_exception_tree() -> None:
    assert issubclass(ProxyProtocolError, ValueError)
    for error in (IncompleteHeader, NoProxyHeader, InvalidHeader, PolicyViolation):
        assert issubclass(error, ProxyProtocolError)
    for error in (HeaderTooLarge, ChecksumMismatch):
        assert issubclass(error, InvalidHeader)
    assert issubclass(UntrustedPeer, PolicyViolation)
    assert not issubclass(IncompleteHeader, InvalidHeader)
    assert not issubclass(NoProxyHeader, InvalidHeader)
    assert IncompleteHeader(7).needed == 7
    assert InvalidHeader("x", 12).offset == 12 and InvalidHeader("x").offset is None


@pytest.mark.parametrize("error", [IncompleteHeader(3), NoProxyHeader("not a header"),
                                   InvalidHeader("bad byte", 13), InvalidHeader("whole"),
                                   HeaderTooLarge("too big", 14),
                                   ChecksumMismatch("mismatch", 28)], ids=repr)
def test_exceptions_survive_pickle_and_copy(error: ProxyProtocolError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error) and str(clone) == str(error)
        assert getattr(clone, "needed", None) == getattr(error, "needed", None)
        assert getattr(clone, "offset", None) == getattr(error, "offset", None)


def test_parse_errors_carry_offsets_in_messages(impl: ModuleType) -> None:
    with pytest.raises(InvalidHeader) as info:
        impl.parse(v2(0x22, 0x11))
    assert info.value.offset == 12 and "offset 12" in str(info.value)
    assert str(info.value)[0].islower()  # house style: lower-case messages


@pytest.mark.parametrize("data", [None, "PROXY UNKNOWN\r\n", 42, [0x50]], ids=repr)
def test_parse_refuses_non_bytes(impl: ModuleType, data: object) -> None:
    with pytest.raises(TypeError):
        impl.parse(data)


@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_proxyheader_field_types(impl: ModuleType, case: Valid) -> None:
    result = impl.parse(case.data)
    assert type(result) is ProxyHeader
    assert result.version in (1, 2) and type(result.version) is int
    assert type(result.command) is Command
    assert type(result.family) is socket.AddressFamily
    assert result.transport is None or type(result.transport) is socket.SocketKind
    assert type(result.tlvs) is tuple
    assert all(type(item) is TLV and type(item.type) is int and type(item.value) is bytes
               for item in result.tlvs)
    assert type(result.length) is int
    for address in (result.source, result.destination):
        if result.family in (socket.AF_INET, socket.AF_INET6) and address is not None:
            assert isinstance(address, tuple)
            host, port = address
            assert type(host) is str and type(port) is int
            # canonical: what inet_ntop writes
            assert socket.inet_ntop(result.family, socket.inet_pton(result.family, host)) == host
        elif result.family == socket.AF_UNIX and address is not None:
            assert isinstance(address, (str, bytes))
    if result.version == 1:
        assert result.tlvs == () and result.command == Command.PROXY


def test_proxyheader_is_immutable_and_hashable(impl: ModuleType) -> None:
    result = impl.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")
    with pytest.raises(AttributeError):
        result.source = ("6.6.6.6", 6)
    with pytest.raises(TypeError):
        result[4] = None
    same = impl.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nextra")
    assert result == same and hash(result) == hash(same)
    assert len({result, same}) == 1 and {result: 1}[same] == 1
    other = impl.parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 3\r\n")
    assert result != other
    # == only with other ProxyHeaders: never with a plain tuple of the same fields.
    assert result != tuple(result) and tuple(result) != result
    assert result.__eq__(tuple(result)) is False
    assert result != "PROXY"


def test_proxyheader_equal_across_implementations(fallback: ModuleType, fast: ModuleType
                                                  ) -> None:
    for case in VALID:
        assert fast.parse(case.data) == fallback.parse(case.data) == case.expected
        assert hash(fast.parse(case.data)) == hash(fallback.parse(case.data))


def test_typed_accessors_none_when_absent(impl: ModuleType) -> None:
    for data in (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", v2(0x21, 0x11, bytes(12)),
                 v2(0x20, 0x00)):
        result = impl.parse(data)
        for name in ("alpn", "authority", "unique_id", "netns", "ssl", "crc32c",
                     "aws_vpce_id", "azure_link_id", "gcp_psc_id"):
            assert getattr(result, name) is None, name
        assert result.get_tlv(0x01) is None and result.get_tlvs(0x01) == ()


def test_typed_accessors_values(impl: ModuleType) -> None:
    case = next(case for case in VALID if case.name == "haproxy_all_options")
    result = impl.parse(case.data)
    assert result.alpn == b"h2" and type(result.alpn) is bytes
    assert result.authority == "example.com"
    assert result.unique_id == b"127.0.0.1:42>127.0.0.1:1337"
    assert result.crc32c == int.from_bytes(result.tlvs[0].value, "big")
    ssl = result.ssl
    assert isinstance(ssl, SSLInfo)
    assert (ssl.client, ssl.verify, ssl.version, ssl.cn) == (7, 0, "TLSv1.3", "client.example")
    assert (ssl.cipher, ssl.sig_alg, ssl.key_alg) == ("TLS_AES_256_GCM_SHA384", "RSA-SHA256",
                                                      "RSA2048")
    assert (ssl.group, ssl.sig_scheme, ssl.client_cert) == (None, None, None)
    duplicates = impl.parse(next(c.data for c in VALID
                                 if c.name == "duplicate_tlvs_kept_in_order"))
    assert duplicates.get_tlv(0xE1) == b"a" and duplicates.get_tlvs(0xE1) == (b"a", b"b")
    assert duplicates.authority == "one.example"  # the first one wins


def test_implementation_selection() -> None:
    assert proxyproto.IMPLEMENTATION in ("cython", "python")
    built = importlib.util.find_spec("proxyproto._fast") is not None
    if not os.environ.get("PROXYPROTO_NO_EXTENSIONS"):
        assert ("cython" if built else "python") == proxyproto.IMPLEMENTATION
    code = ("import proxyproto, proxyproto._fallback as f; "
            "print(proxyproto.IMPLEMENTATION, proxyproto.parse is f.parse)")
    for value in ("1", "yes", "0"):  # any non-empty value forces the pure-Python module
        env = dict(os.environ, PROXYPROTO_NO_EXTENSIONS=value)
        output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, check=True, timeout=60).stdout.split()
        assert output == ["python", "True"]


# [SPEC §2] R-2: a v1 receiver implements text, a v2 receiver binary and (recommended)
# text too: one parse accepts both.
def test_r2_one_receiver_accepts_both_formats(impl: ModuleType) -> None:
    assert impl.parse(b"PROXY UNKNOWN\r\n").version == 1
    assert impl.parse(v2(0x21, 0x11, bytes(12))).version == 2
    assert proxyproto.parse(b"PROXY UNKNOWN\r\n").version == 1


# [SPEC §2, §5]: configuration decides, never the payload. The policy is
# chosen from the peer address and configuration before a byte is read; the core has no
# "header if it looks like one" entry point. (The adapters apply it:
# test_blocking.py::test_handle_connection_untrusted_closed_before_reading,
# test_blocking_server.py::test_matrix, test_aio_matrix.py.)
def test_r61_policy_decided_before_reading(impl: ModuleType) -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    assert decide_policy(("10.1.2.3", 40000), ("10.0.0.1", 443), trusted=trusted) \
        is Policy.REQUIRE
    assert decide_policy(("203.0.113.9", 40000), ("10.0.0.1", 443), trusted=trusted) is None
    with pytest.raises(NoProxyHeader):
        impl.parse(b"GET / HTTP/1.1\r\n\r\n")


# [SPEC §2, §5]: only known sources may send a header; the socket peer is
# checked against trusted networks before any header address is believed (on sockets:
# test_blocking.py::test_handle_connection_untrusted_header_never_believed,
# test_hostile.py::test_handle_connection_spoofing_peer_is_closed_unread).
def test_r11_only_trusted_sources(impl: ModuleType) -> None:
    trusted = TrustedProxies(["192.0.2.0/24", "2001:db8::/32", "198.51.100.7"])
    inside: list[object] = ["192.0.2.1", "::ffff:192.0.2.200",
                            ipaddress.ip_address("2001:db8::5"), ("198.51.100.7", 5000)]
    for peer in inside:
        assert peer in trusted
    outside: list[object] = ["192.0.3.1", "198.51.100.8", "::1", "/run/sock", None, ""]
    for peer in outside:
        assert peer not in trusted


def test_r62_header_addresses_never_decide_trust(impl: ModuleType) -> None:
    trusted = TrustedProxies(["10.0.0.0/8"])
    header = impl.parse(b"PROXY TCP4 10.9.9.9 10.0.0.1 1 2\r\n")  # claims a trusted source
    assert decide_policy(("203.0.113.9", 1), ("10.0.0.1", 2), trusted=trusted) is None
    assert header.source[0] in trusted  # it would pass if the header were believed


# [SPEC §2] R-12: one connection, one client: a header describes the connection it starts,
# and later bytes (even another header) are the application's.
def test_r12_one_header_per_connection(impl: ModuleType) -> None:
    first, second = (b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\r\n", b"PROXY TCP4 3.3.3.3 2.2.2.2 3 2\r\n")
    reader = HeaderReader()
    assert reader.feed(first + second) == impl.parse(first)
    assert reader.trailing_data == second
    with pytest.raises(RuntimeError):
        reader.feed(second)


# the strict design: trusted peers must send a header (REQUIRE), others are refused
# (None: close without reading); a callable policy cannot make an untrusted peer's header
# count.
def test_a19_strict_policy_by_default() -> None:
    trusted = TrustedProxies(["127.0.0.0/8"])
    local = ("127.0.0.1", 443)
    assert decide_policy(("127.0.0.5", 1), local, trusted=trusted) is Policy.REQUIRE
    assert decide_policy(("8.8.8.8", 1), local, trusted=trusted) is None
    assert decide_policy(("8.8.8.8", 1), local, trusted=trusted,
                         policy=lambda peer, here: Policy.USE) is None
    assert decide_policy(("8.8.8.8", 1), local, trusted=trusted,
                         untrusted_policy=Policy.SKIP) is Policy.SKIP


# Every rule of shared/spec-checklist.md (R-1..R-65, A-1..A-20) has a test named after it.
def test_every_rule_has_a_named_test() -> None:
    source = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.glob("test_*.py"))
    named = set(re.findall(r"^def test_([ra]\d+)_", source, flags=re.MULTILINE))
    expected = {f"r{n}" for n in range(1, 66)} | {f"a{n}" for n in range(1, 21)}
    assert sorted(expected - named, key=lambda s: (s[0], int(s[1:]))) == []


def test_parse_or_needed_returns_needed_instead_of_raising(impl: ModuleType) -> None:
    """The adapters' entry point: an int where parse raises IncompleteHeader, else parse."""
    whole = impl.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2))
    for cut in range(len(whole)):
        with pytest.raises(proxyproto.IncompleteHeader) as caught:
            impl.parse(whole[:cut])
        assert impl.parse_or_needed(whole[:cut]) == caught.value.needed
    assert impl.parse_or_needed(whole + b"x") == impl.parse(whole)
    line = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n"
    for cut in range(len(line)):
        with pytest.raises(proxyproto.IncompleteHeader) as caught:
            impl.parse(line[:cut])
        assert impl.parse_or_needed(bytearray(line[:cut])) == caught.value.needed
    with pytest.raises(proxyproto.NoProxyHeader):
        impl.parse_or_needed(b"GET / HTTP/1.1\r\n")
    with pytest.raises(proxyproto.InvalidHeader):
        impl.parse_or_needed(b"PROXY TCP4 x\r\n")
