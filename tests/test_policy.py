"""The trust rules, the refusal reasons, the options object and the connection-start
machine (``proxyproto.policy``), sans-IO. Every parsing-related test runs against both
implementations (``routed``: the machine calls that implementation's parse_or_needed)."""

from __future__ import annotations

import ipaddress
import math
import pickle
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

import proxyproto
from cases import reader_using
from proxyproto import (
    ChecksumMismatch,
    HeaderTooLarge,
    IncompleteHeader,
    InvalidHeader,
    NoProxyHeader,
    Policy,
    PolicyViolation,
    ProxyProtocolError,
    TrustedProxies,
    UntrustedPeer,
    _errors,
    _policy,
    encode_v1,
    encode_v2,
)
from proxyproto._adapters import refusal_reason
from proxyproto.policy import (
    Decided,
    Need,
    PolicyReader,
    ProxyOptions,
    Refused,
    accept_datagram,
    apply_policy,
    decide_datagram,
    decide_policy,
    decide_start,
    is_unix_peer,
)

SRC, DST = ("192.0.2.1", 51000), ("198.51.100.2", 443)
V1 = encode_v1(SRC, DST)
V2 = encode_v2(SRC, DST)
PAYLOAD = b"GET / HTTP/1.1\r\n\r\n"
TRUSTED = TrustedProxies(["10.0.0.0/8"])
PROXY_PEER, CLIENT_PEER = ("10.0.0.5", 40000), ("203.0.113.9", 40000)
LOCAL = ("10.0.0.1", 8080)
OPTIONAL = (Policy.USE, Policy.IGNORE, Policy.REJECT)


@pytest.fixture()
def routed(impl: ModuleType) -> Iterator[ModuleType]:
    """The readers and the machine call ``impl`` for the duration of the test."""
    with reader_using(impl.parse):
        yield impl


# -- errors: one class, one reason per refusal cause ----------------------------------


def test_every_error_has_a_reason_and_refusal_reason_reads_it() -> None:
    expected = {
        "ProxyProtocolError": "invalid", "IncompleteHeader": "eof",
        "NoProxyHeader": "no_header", "InvalidHeader": "invalid",
        "HeaderTooLarge": "too_large", "ChecksumMismatch": "invalid",
        "PolicyViolation": "rejected", "HeaderRejected": "rejected",
        "MissingHeader": "no_header", "UntrustedPeer": "untrusted",
        "PolicyError": "error", "HeaderTimeout": "timeout", "HandshakeFailed": "tls",
    }
    names = [name for name in _errors.__all__ if name != "REFUSALS"]
    assert sorted(names) == sorted(expected)
    for name, reason in expected.items():
        cls = getattr(_errors, name)
        assert cls.reason == reason, name
        error = cls(5) if cls is IncompleteHeader else cls("x")
        assert refusal_reason(error) == reason, name
    # foreign exceptions: what the adapters counted before
    assert refusal_reason(TimeoutError()) == "timeout"
    assert refusal_reason(ConnectionResetError()) == "eof"
    assert refusal_reason(RuntimeError()) == "error"
    import ssl

    assert refusal_reason(ssl.SSLError(1, "x")) == "eof"  # its own .reason is not ours


def test_missing_header_is_both_old_classes() -> None:
    error = _errors.MissingHeader("none")
    assert isinstance(error, NoProxyHeader) and isinstance(error, PolicyViolation)
    assert issubclass(_errors.HeaderTimeout, TimeoutError)
    assert issubclass(_errors.HandshakeFailed, OSError)
    assert issubclass(_errors.PolicyError, ProxyProtocolError)
    # the constructors both twins call keep their signatures, and pickle
    assert pickle.loads(pickle.dumps(IncompleteHeader(3))).needed == 3
    copy = pickle.loads(pickle.dumps(ChecksumMismatch("bad crc", 14)))
    assert (type(copy), copy.offset, str(copy)) == (ChecksumMismatch, 14, "bad crc (offset 14)")


def test_old_import_paths_still_work() -> None:
    assert _policy.PolicyViolation is _errors.PolicyViolation is proxyproto.PolicyViolation
    assert _policy.UntrustedPeer is _errors.UntrustedPeer is proxyproto.UntrustedPeer
    assert _policy.PolicyReader is PolicyReader and _policy.accept_datagram is accept_datagram
    assert _policy.TrustedProxies is TrustedProxies


def test_no_header_under_require_is_one_class_in_every_path(routed: ModuleType) -> None:
    errors: list[BaseException] = []
    with pytest.raises(NoProxyHeader) as caught:
        apply_policy(Policy.REQUIRE, None)
    errors.append(caught.value)
    with pytest.raises(NoProxyHeader) as caught:
        PolicyReader(Policy.REQUIRE).feed(PAYLOAD)
    errors.append(caught.value)
    with pytest.raises(NoProxyHeader) as caught:
        PolicyReader(Policy.REQUIRE).finish()
    errors.append(caught.value)
    with pytest.raises(NoProxyHeader) as caught:
        accept_datagram(PAYLOAD, PROXY_PEER, LOCAL, trusted=TRUSTED)
    errors.append(caught.value)
    result = decide_start(Policy.REQUIRE, PAYLOAD)
    assert type(result) is Refused
    errors.append(result.error)
    assert {type(error) for error in errors} == {_errors.MissingHeader}
    assert {refusal_reason(error) for error in errors} == {"no_header"}


# -- TrustedProxies: strict syntax (issue 9 item 2) -----------------------------------


def test_host_bits_set_are_refused_showing_the_network_meant() -> None:
    for text, meant in (("10.0.0.1/8", "10.0.0.0/8"), ("192.168.1.7/24", "192.168.1.0/24"),
                        ("2001:db8::1/32", "2001:db8::/32"),
                        ("::ffff:10.0.0.1/104", "::ffff:a00:0/104")):
        with pytest.raises(ValueError, match="host bits") as caught:
            TrustedProxies([text])
        assert meant in str(caught.value)
    assert "10.9.9.9" not in TrustedProxies(["10.0.0.1/32"])
    assert "10.9.9.9" in TrustedProxies(["10.0.0.0/8"])


def test_a_bare_address_is_one_host() -> None:
    trusted = TrustedProxies(["10.0.0.1", "2001:db8::1", ipaddress.ip_address("192.0.2.9")])
    assert "10.0.0.1" in trusted and "10.0.0.2" not in trusted
    assert "2001:db8::1" in trusted and "2001:db8::2" not in trusted
    assert "192.0.2.9" in trusted and "192.0.2.10" not in trusted


def test_zone_ids_are_refused_never_dropped() -> None:
    for entry in ("fe80::1%eth0", "fe80::%eth0/64", " fe80::1%1 "):
        with pytest.raises(ValueError, match="zone"):
            TrustedProxies([entry])
    with pytest.raises(ValueError, match="zone"):
        TrustedProxies([ipaddress.IPv6Address("fe80::1%eth0")])
    with pytest.raises(ValueError, match="zone"):
        TrustedProxies([ipaddress.IPv6Network("fe80::%eth0/64")])
    # an entry without a zone matches the address on any interface (a peer's zone is
    # not compared): that is what an entry without a zone says
    assert ("fe80::1%eth0", 1, 0, 2) in TrustedProxies(["fe80::1"])


def test_any_networks_and_ipv4_mapped_peers() -> None:
    v4_any, v6_any = TrustedProxies(["0.0.0.0/0"]), TrustedProxies(["::/0"])
    mapped = "::ffff:203.0.113.9"
    # an IPv4-mapped peer is an IPv4 peer: 0.0.0.0/0 covers it, ::/0 does not
    assert "203.0.113.9" in v4_any and mapped in v4_any and (mapped, 1, 0, 0) in v4_any
    assert "2001:db8::1" not in v4_any
    assert "2001:db8::1" in v6_any and "::1" in v6_any
    assert mapped not in v6_any and "203.0.113.9" not in v6_any
    # the mapped form written in IPv6 with a /96 or longer prefix is an IPv4 network
    written = TrustedProxies(["::ffff:10.0.0.0/104"])
    assert "10.1.2.3" in written and "::ffff:10.1.2.3" in written and "11.0.0.1" not in written
    assert "::ffff:10.1.2.3" in TrustedProxies(["10.0.0.0/8"])


def test_other_entries_are_refused() -> None:
    for bad in ("not a network", "10.0.0.0/33", "", "10.0.0.0/8/8"):
        with pytest.raises(ValueError):
            TrustedProxies([bad])
    with pytest.raises(TypeError):
        TrustedProxies("10.0.0.0/8")
    with pytest.raises(TypeError):
        TrustedProxies([10])  # type: ignore[list-item]
    assert TrustedProxies(["10.0.0.0/8"]) == TrustedProxies([ipaddress.ip_network("10.0.0.0/8")])


# -- decide_policy: an untrusted peer's header is never believed (issue 9 item 1) -------


def test_decide_policy_never_believes_an_untrusted_peer() -> None:
    for believing in (Policy.USE, Policy.REQUIRE):
        with pytest.raises(ValueError, match="never believed"):
            decide_policy(CLIENT_PEER, LOCAL, trusted=TRUSTED, untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):  # whoever the peer
            decide_policy(PROXY_PEER, LOCAL, trusted=TRUSTED, untrusted_policy=believing)
        assert decide_policy(CLIENT_PEER, LOCAL, trusted=TRUSTED,
                             policy=lambda peer, local, p=believing: p) is None
    for harmless in (Policy.SKIP, Policy.IGNORE, Policy.REJECT, None):
        assert decide_policy(CLIENT_PEER, LOCAL, trusted=TRUSTED,
                             untrusted_policy=harmless) is harmless
    assert decide_policy(PROXY_PEER, LOCAL, trusted=TRUSTED, policy=Policy.USE) is Policy.USE


def test_accept_datagram_never_believes_an_untrusted_peer(routed: ModuleType) -> None:
    with pytest.raises(ValueError, match="never believed"):
        accept_datagram(V2 + PAYLOAD, CLIENT_PEER, LOCAL, trusted=TRUSTED,
                        untrusted_policy=Policy.USE)
    with pytest.raises(UntrustedPeer):
        accept_datagram(V2 + PAYLOAD, CLIENT_PEER, LOCAL, trusted=TRUSTED,
                        policy=lambda peer, local: Policy.USE)
    header, payload = accept_datagram(V2 + PAYLOAD, CLIENT_PEER, LOCAL, trusted=TRUSTED,
                                      untrusted_policy=Policy.IGNORE)
    assert (header, payload) == (None, PAYLOAD)
    header, payload = accept_datagram(V2 + PAYLOAD, PROXY_PEER, LOCAL, trusted=TRUSTED)
    assert header is not None and header.source == SRC and payload == PAYLOAD


def test_untrusted_rule_through_every_public_configuration() -> None:
    import asyncio

    from proxyproto import aio, blocking

    for believing in (Policy.USE, Policy.REQUIRE):
        with pytest.raises(ValueError, match="never believed"):
            ProxyOptions(TRUSTED, untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):
            ProxyOptions(TRUSTED).replace(untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):
            blocking.handle_connection(None, ("10.0.0.5", 1),  # type: ignore[arg-type]
                                       trusted=TRUSTED, untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):
            blocking.recv_datagram(None, trusted=TRUSTED,  # type: ignore[arg-type]
                                   untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):
            blocking.ProxyProtocolMixIn(trusted=TRUSTED, untrusted_policy=believing)
        with pytest.raises(ValueError, match="never believed"):
            aio.wrap_protocol_factory(asyncio.Protocol, trusted=TRUSTED,
                                      untrusted_policy=believing)


def test_policy_callable_faults_are_policy_errors() -> None:
    def broken(peer: Any, local: Any) -> Policy:
        raise ZeroDivisionError("policy bug")

    with pytest.raises(_errors.PolicyError, match="policy bug") as caught:
        decide_policy(PROXY_PEER, LOCAL, trusted=TRUSTED, policy=broken)
    assert isinstance(caught.value.__cause__, ZeroDivisionError)
    assert refusal_reason(caught.value) == "error"
    with pytest.raises(_errors.PolicyError, match="not a Policy"):
        decide_policy(PROXY_PEER, LOCAL, trusted=TRUSTED,
                      policy=lambda peer, local: "use")  # type: ignore[arg-type,return-value]


# -- UNIX-socket peers (issue 10: the explicit opt-in) ----------------------------------


def test_unix_peers_are_trusted_only_on_request() -> None:
    for peer in ("", "/run/app.sock", b"\x00abstract"):
        assert is_unix_peer(peer)
        assert decide_policy(peer, "/run/app.sock", trusted=TRUSTED) is None
        assert decide_policy(peer, "", trusted=TRUSTED, trust_unix_peers=True) is Policy.REQUIRE
        options = ProxyOptions(TRUSTED, trust_unix_peers=True, policy=Policy.USE)
        assert options.decide(peer, "") is Policy.USE
    for peer in (("127.0.0.1", 1), "127.0.0.1", "::1", ipaddress.ip_address("10.0.0.1")):
        assert not is_unix_peer(peer)
    # an IP peer is judged by the trust list, the opt-in or not
    assert decide_policy(CLIENT_PEER, LOCAL, trusted=TRUSTED, trust_unix_peers=True) is None
    header, _ = accept_datagram(V2, "", "", trusted=TRUSTED, trust_unix_peers=True)
    assert header is not None and header.source == SRC
    with pytest.raises(UntrustedPeer):
        accept_datagram(V2, "", "", trusted=TRUSTED)


# -- ProxyOptions: one rule set --------------------------------------------------------


def test_options_defaults_and_immutability() -> None:
    options = ProxyOptions(["10.0.0.0/8"])
    assert (options.trusted, options.policy, options.untrusted_policy, options.timeout,
            options.max_size, options.trust_unix_peers) == (
        TRUSTED, Policy.REQUIRE, None, 5.0, 4096, False)
    with pytest.raises(AttributeError):
        options.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del options.policy
    changed = options.replace(timeout=2, untrusted_policy=Policy.SKIP)
    assert (changed.timeout, changed.untrusted_policy, options.timeout) == (2.0, Policy.SKIP, 5.0)
    assert changed == ProxyOptions(TRUSTED, timeout=2.0, untrusted_policy=Policy.SKIP)
    assert hash(changed) == hash(ProxyOptions(TRUSTED, timeout=2.0,
                                              untrusted_policy=Policy.SKIP))
    assert pickle.loads(pickle.dumps(changed)) == changed
    assert "timeout=2.0" in repr(changed)


@pytest.mark.parametrize(("arguments", "error"), [
    ({"timeout": "5"}, TypeError), ({"timeout": True}, TypeError), ({"timeout": 0}, ValueError),
    ({"timeout": -1}, ValueError), ({"timeout": math.nan}, ValueError),
    ({"max_size": 4096.0}, TypeError), ({"max_size": "4096"}, TypeError),
    ({"max_size": 15}, ValueError), ({"policy": "require"}, TypeError),
    ({"untrusted_policy": "skip"}, TypeError), ({"untrusted_policy": Policy.USE}, ValueError),
    ({"trust_unix_peers": 1}, TypeError), ({"trusted": "10.0.0.0/8"}, TypeError),
    ({"trusted": ["10.0.0.1/8"]}, ValueError), ({"trusted": ["nonsense"]}, ValueError),
])
def test_options_one_set_of_exception_types(arguments: dict[str, Any],
                                            error: type[Exception]) -> None:
    trusted = arguments.pop("trusted", TRUSTED)
    with pytest.raises(error):
        ProxyOptions(trusted, **arguments)


def test_options_none_timeout_means_no_deadline() -> None:
    assert ProxyOptions(TRUSTED, timeout=None).timeout is None
    assert ProxyOptions(TRUSTED, timeout=math.inf).timeout is None
    assert ProxyOptions(TRUSTED, timeout=3).timeout == 3.0


def test_options_helpers_apply_the_same_rules(routed: ModuleType) -> None:
    options = ProxyOptions(TRUSTED, untrusted_policy=Policy.IGNORE, max_size=64)
    assert options.decide(PROXY_PEER, LOCAL) is Policy.REQUIRE
    assert options.decide(CLIENT_PEER, LOCAL) is Policy.IGNORE
    assert options.reader(Policy.USE).feed(V1)
    big = encode_v2(SRC, DST, tlvs=[(0xE0, bytes(100))])
    with pytest.raises(HeaderTooLarge):
        options.accept_datagram(big, PROXY_PEER, LOCAL)
    with pytest.raises(HeaderTooLarge):  # malformed whatever the policy
        options.accept_datagram(big, CLIENT_PEER, LOCAL)


# -- the machine -----------------------------------------------------------------------


def test_machine_outcomes(routed: ModuleType) -> None:
    parsed = routed.parse(V2)
    assert decide_start(Policy.REQUIRE, V2 + PAYLOAD) == Decided(parsed, parsed, len(V2))
    assert decide_start(Policy.IGNORE, V2 + PAYLOAD) == Decided(None, parsed, len(V2))
    assert decide_start(Policy.USE, PAYLOAD) == Decided(None, None, 0)
    assert decide_start(Policy.SKIP, V2) == Decided(None, None, 0)
    assert decide_start(Policy.REQUIRE, V2[:10]) == Need(6)
    assert decide_start(Policy.REQUIRE, b"") == Need(15)
    rejected = decide_start(Policy.REJECT, V2)
    assert type(rejected) is Refused and rejected.reason == "rejected"
    assert type(rejected.error) is _errors.HeaderRejected
    for policy in (Policy.REQUIRE, *OPTIONAL):
        invalid = decide_start(policy, b"PROXY TCP4 x\r\n")
        assert type(invalid) is Refused and invalid.reason == "invalid"
        big = decide_start(policy, encode_v2(SRC, DST, tlvs=[(0xE0, bytes(100))]), 64)
        assert type(big) is Refused and big.reason == "too_large"


def test_machine_final(routed: ModuleType) -> None:
    nothing = decide_start(Policy.REQUIRE, b"", final=True)
    assert type(nothing) is Refused and type(nothing.error) is _errors.MissingHeader
    for policy in OPTIONAL:
        assert decide_start(policy, b"", final=True) == Decided(None, None, 0)
    for policy in (Policy.REQUIRE, *OPTIONAL):
        cut = decide_start(policy, V2[:20], final=True)
        assert type(cut) is Refused and type(cut.error) is IncompleteHeader
        assert cut.error.needed == len(V2) - 20
        partial_line = decide_start(policy, V1[:20], final=True)
        assert type(partial_line) is Refused and type(partial_line.error) is IncompleteHeader
        bad_line = decide_start(policy, b"PROXY TCP4 999.1.1.1 ", final=True)
        assert type(bad_line) is Refused and type(bad_line.error) is InvalidHeader


def test_a_partial_v1_line_is_judged_at_its_lf(routed: ModuleType) -> None:
    # Need is a lower bound for a line missing its LF; it is not validated before it
    bad = b"PROXY TCP4 999.1.1.1 198.51.100.2 1 2"
    assert decide_start(Policy.REQUIRE, bad) == Need(1)
    assert decide_start(Policy.REQUIRE, V1[:8]) == Need(7)
    refused = decide_start(Policy.REQUIRE, bad + b"\r\n")
    assert type(refused) is Refused and refused.reason == "invalid"
    too_long = decide_start(Policy.USE, b"PROXY " + b"1" * 101)  # 107 bytes, no LF
    assert type(too_long) is Refused and refused.reason == "invalid"
    # the reader's needed stays exact, computed when asked
    reader = PolicyReader(Policy.REQUIRE)
    assert not reader.feed(b"PROXY TCP4 1.2.")
    assert reader.needed == 17


def test_policy_reader_feeds_byte_by_byte(routed: ModuleType) -> None:
    for data in (V1, V2, encode_v2(SRC, DST, tlvs=[(0xE0, bytes(300))], crc32c=True)):
        for policy in (Policy.REQUIRE, Policy.USE, Policy.IGNORE):
            reader = PolicyReader(policy, max_size=65551)
            for index in range(len(data) - 1):
                assert not reader.feed(data[index : index + 1])
                assert reader.buffered == index + 1
                assert 1 <= reader.needed <= len(data) - index - 1
            assert reader.feed(data[-1:] + PAYLOAD)
            assert reader.received == routed.parse(data) and reader.app_data == PAYLOAD


def test_one_parse_per_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """An invalid first chunk costs one parse; a v2 header fed byte by byte five (its
    bytes 13 to 16, each able to refuse it early, A-1, then the whole); a v1 line fed
    byte by byte one, at its LF (a signature prefix is recognised without a parse)."""
    from proxyproto import _impl

    calls: list[bytes] = []
    real = _impl.parse_or_needed

    def counting(data: Any, *, max_size: int) -> Any:
        calls.append(bytes(data))
        return real(data, max_size=max_size)

    monkeypatch.setattr(_impl, "parse_or_needed", counting)
    with pytest.raises(InvalidHeader):
        PolicyReader(Policy.USE).feed(b"PROXY TCP4 x\r\n" + PAYLOAD)
    assert len(calls) == 1
    calls.clear()
    reader = PolicyReader(Policy.REQUIRE)
    for index in range(len(V2)):
        reader.feed(V2[index : index + 1])
    assert reader.done and [len(call) for call in calls] == [13, 14, 15, 16, len(V2)]
    calls.clear()
    reader = PolicyReader(Policy.REQUIRE)
    for index in range(len(V1)):
        reader.feed(V1[index : index + 1])
    assert reader.done and calls == [V1]


def test_datagrams_that_are_a_signature_prefix_are_payload(routed: ModuleType) -> None:
    """Issue 9 item 8: a datagram is complete, so a prefix of a signature is no header."""
    for data in (b"P", b"PRO", b"PROXY", b"\r", b"\r\n", b"\r\n\r\n\x00\r\nQUI"):
        for policy in OPTIONAL:
            assert decide_datagram(policy, data) == Decided(None, None, 0)
            assert accept_datagram(data, PROXY_PEER, LOCAL, trusted=TRUSTED,
                                   policy=policy) == (None, data)
        refused = decide_datagram(Policy.REQUIRE, data)
        assert type(refused) is Refused and type(refused.error) is InvalidHeader
        with pytest.raises(InvalidHeader, match="datagram ends inside"):
            accept_datagram(data, PROXY_PEER, LOCAL, trusted=TRUSTED)
    # a complete signature and more, cut short, is a header cut short: refused
    for data in (b"PROXY ", b"PROXY TCP4 1.2.3.4", V2[:12], V2[:20]):
        for policy in (Policy.REQUIRE, *OPTIONAL):
            refused = decide_datagram(policy, data)
            assert type(refused) is Refused and type(refused.error) is InvalidHeader
    assert decide_datagram(Policy.USE, b"") == Decided(None, None, 0)
    empty = decide_datagram(Policy.REQUIRE, b"")
    assert type(empty) is Refused and empty.reason == "no_header"


def test_decide_policy_refuses_a_policy_of_another_type() -> None:
    with pytest.raises(TypeError):
        decide_policy(PROXY_PEER, LOCAL, trusted=TRUSTED, policy="use")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["policy", "_connection", "_options", "_trust", "_reader",
                                  "_policy"])
def test_docstring_examples(name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(f"proxyproto.{name}")
    failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0 and tried > 0
