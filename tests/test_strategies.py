"""The public Hypothesis strategies draw only what the encoders and the parser accept."""

from __future__ import annotations

import contextlib
from types import ModuleType

from hypothesis import given, settings

from proxyproto import ProxyProtocolError
from proxyproto import strategies as pps


@settings(max_examples=150, deadline=None)
@given(wire=pps.header_bytes(), payload=pps.payloads())
def test_header_bytes_parse_and_keep_payload(impl: ModuleType, wire: bytes,
                                             payload: bytes) -> None:
    header = impl.parse(wire + payload)
    assert header.length == len(wire)
    again = impl.parse(header.to_bytes())
    assert (again.source, again.destination) == (header.source, header.destination)


@settings(max_examples=150, deadline=None)
@given(wire=pps.mutated_headers())
def test_mutated_headers_raise_only_library_errors(impl: ModuleType, wire: bytes) -> None:
    with contextlib.suppress(ProxyProtocolError):
        impl.parse(wire)


@settings(max_examples=50, deadline=None)
@given(header=pps.headers(version=2))
def test_headers_strategy_gives_v2_headers(header: object) -> None:
    assert getattr(header, "version") == 2  # noqa: B009
