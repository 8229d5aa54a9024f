"""The public Hypothesis strategies draw only what the encoders and the parser accept."""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, Callable

from hypothesis import given, settings

from doc_blocks import ROOT, blocks
from proxyproto import ProxyHeader, ProxyProtocolError
from proxyproto import strategies as pps

ACCESSORS = ("alpn", "authority", "crc32c", "unique_id", "netns", "ssl", "aws_vpce_id",
             "azure_link_id", "gcp_psc_id", "is_local")


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


@settings(max_examples=150, deadline=None)
@given(wire=pps.header_bytes())
def test_accessors_never_raise_on_generated_headers(impl: ModuleType, wire: bytes) -> None:
    """Issue 9 item 4, generalised: other programs' custom-range TLVs included."""
    header = impl.parse(wire)
    for name in ACCESSORS:
        getattr(header, name)


@settings(max_examples=50, deadline=None)
@given(header=pps.headers(version=2))
def test_headers_strategy_gives_v2_headers(header: ProxyHeader) -> None:
    assert type(header) is ProxyHeader and header.version == 2


@settings(max_examples=50, deadline=None)
@given(pair=pps.addresses())
def test_address_pairs_are_of_one_kind(pair: pps.AddressPair) -> None:
    kinds = {type(address) for address in pair}
    assert kinds <= {tuple} or kinds <= {str, bytes} or pair == (None, None)


def test_docs_example_runs() -> None:
    """The property tests shown in docs/strategies.rst run and pass as written."""
    code = [block.code for block in blocks([ROOT / "docs" / "strategies.rst"])]
    assert code, "docs/strategies.rst lost its example"
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(code), "docs/strategies.rst", "exec"), namespace)
    tests: list[Callable[[], None]] = [value for name, value in namespace.items()
                                       if name.startswith("test_") and callable(value)]
    assert len(tests) == 2
    for test in tests:
        test()
