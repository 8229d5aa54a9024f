"""Value types: :class:`ProxyHeader`, :class:`TLV`, :class:`SSLInfo` and the enums.

Both implementations of the parser (Cython and pure Python) build these same classes, so
results compare equal whichever implementation produced them.
"""

from __future__ import annotations

import enum
import re
import socket
from collections.abc import Iterable
from typing import Any, Callable, NamedTuple, Optional, TypeVar, Union

__all__ = [
    "Address",
    "Command",
    "InetAddress",
    "ProxyHeader",
    "SSLClient",
    "SSLInfo",
    "SSLSubtype",
    "SocketAddress",
    "TLV",
    "TLVType",
    "UnixAddress",
]

#: An INET/INET6 address: ``(host, port)``, the host as ``socket.inet_ntop`` writes it.
InetAddress = tuple[str, int]
#: An AF_UNIX address: the path as ``str``, or ``bytes`` for a Linux abstract name (its
#: first byte is NUL).
UnixAddress = Union[str, bytes]
#: An address as found in a header: an :data:`InetAddress` or a :data:`UnixAddress`.
Address = Union[InetAddress, str, bytes]
#: An address as a socket reports it (``getpeername()``, ``getsockname()``): what a
#: header holds, or AF_INET6's ``(host, port, flowinfo, scope_id)``. The type of an
#: "original client" that falls back to the socket's peer when the header has none.
SocketAddress = Union[InetAddress, tuple[str, int, int, int], str, bytes]


class Command(enum.IntEnum):
    """The v2 command nibble (v1 headers are always ``PROXY``)."""

    LOCAL = 0x0  #: the proxy opened the connection itself (health check): use the real endpoints
    PROXY = 0x1  #: the connection was made on behalf of another node: use the header's addresses


class TLVType(enum.IntEnum):
    """Registered v2 TLV types ([SPEC §2.2]) and the cloud vendors' types."""

    ALPN = 0x01
    AUTHORITY = 0x02
    CRC32C = 0x03
    NOOP = 0x04
    UNIQUE_ID = 0x05
    SSL = 0x20
    NETNS = 0x30
    GCP = 0xE0  #: Google Cloud Private Service Connect: 8-byte big-endian connection id
    AWS = 0xEA  #: AWS (NLB / PrivateLink): subtype byte, then data
    AZURE = 0xEE  #: Azure Private Link: subtype byte, then data


class SSLSubtype(enum.IntEnum):
    """Sub-TLV types found inside the SSL TLV ([SPEC §2.2.6])."""

    VERSION = 0x21
    CN = 0x22
    CIPHER = 0x23
    SIG_ALG = 0x24
    KEY_ALG = 0x25
    GROUP = 0x26
    SIG_SCHEME = 0x27
    CLIENT_CERT = 0x28


class SSLClient(enum.IntFlag):
    """Bits of the SSL TLV's ``client`` field."""

    SSL = 0x01  #: the client connected over TLS
    CERT_CONN = 0x02  #: the client presented a certificate on this connection
    CERT_SESS = 0x04  #: the client presented a certificate at least once in this TLS session


#: AWS subtype carrying the VPC endpoint id.
AWS_SUBTYPE_VPCE_ID = 0x01
#: Azure subtype carrying the private endpoint link id.
AZURE_SUBTYPE_PRIVATEENDPOINT_LINKID = 0x01


class TLV(NamedTuple):
    """One v2 TLV as found on the wire: its ``type`` and raw ``value``."""

    type: int
    value: bytes


class SSLInfo(NamedTuple):
    """The decoded SSL TLV (type 0x20). Absent sub-TLVs are ``None``.

    ``verify`` is zero only if a certificate was presented *and* verified; check
    :attr:`verified`, which also looks at the certificate bits of ``client``.
    """

    client: int
    verify: int
    version: Optional[str] = None
    cn: Optional[str] = None
    cipher: Optional[str] = None
    sig_alg: Optional[str] = None
    key_alg: Optional[str] = None
    group: Optional[str] = None
    sig_scheme: Optional[str] = None
    client_cert: Optional[bytes] = None
    sub_tlvs: tuple[TLV, ...] = ()

    @property
    def client_ssl(self) -> bool:
        """The client connected over TLS (``PP2_CLIENT_SSL``)."""
        return bool(self.client & SSLClient.SSL)

    @property
    def client_cert_conn(self) -> bool:
        """A client certificate was presented on this connection."""
        return bool(self.client & SSLClient.CERT_CONN)

    @property
    def client_cert_sess(self) -> bool:
        """A client certificate was presented at least once in this TLS session."""
        return bool(self.client & SSLClient.CERT_SESS)

    @property
    def verified(self) -> bool:
        """A client certificate was presented and verified successfully."""
        return bool(self.client & (SSLClient.CERT_CONN | SSLClient.CERT_SESS)) and self.verify == 0


def decode_ssl(value: bytes) -> SSLInfo:
    """Decode an SSL TLV value (already validated by the parser) with the pure-Python
    reference; :attr:`ProxyHeader.ssl` uses the selected implementation's (C when built).

    Raises:
        InvalidHeader: the value is malformed (only for values that did not come from
            :func:`proxyproto.parse`).
    """
    from ._v2 import decode_ssl as reference  # here: _v2 imports this module

    return reference(value)


# -- typed accessors' plumbing ---------------------------------------------------------

# TLV type numbers as plain ints: a lookup compares ints, it never builds an enum member.
_ALPN = 0x01
_AUTHORITY = 0x02
_CRC32C = 0x03
_UNIQUE_ID = 0x05
_SSL = 0x20
_NETNS = 0x30
_GCP = 0xE0
_AWS = 0xEA
_AZURE = 0xEE
_AWS_VPCE_ID = re.compile(rb"\x01[A-Za-z0-9-]*\Z")  # subtype 0x01, then the id

_decode_ssl: Optional[Callable[[bytes], SSLInfo]] = None


def _ssl_decoder() -> Callable[[bytes], SSLInfo]:
    """The selected implementation's SSL decoder (in C on the compiled path), found once."""
    global _decode_ssl
    if _decode_ssl is None:
        # Imported here, not at import time: _impl imports the twins, which import us.
        from ._impl import decode_ssl as selected

        _decode_ssl = selected
    return _decode_ssl


# Decoded SSL TLVs by value: a header's ``ssl`` is decoded at its first access only, and
# the many connections whose TLS parameters are the same share one decoding (an SSLInfo
# is immutable). Bounded: at most _SSL_CACHE_ENTRIES values of at most _SSL_CACHE_VALUE
# bytes each are kept (the cache is emptied when full), so distinct values cost no more.
_SSL_CACHE: dict[bytes, SSLInfo] = {}
_SSL_CACHE_ENTRIES = 256
_SSL_CACHE_VALUE = 4096


def _decoded_ssl(value: bytes) -> SSLInfo:
    info = _SSL_CACHE.get(value)
    if info is None:
        info = _ssl_decoder()(value)
        if len(value) <= _SSL_CACHE_VALUE:
            if len(_SSL_CACHE) >= _SSL_CACHE_ENTRIES:
                _SSL_CACHE.clear()
            _SSL_CACHE[value] = info
    return info


_H = TypeVar("_H", bound="ProxyHeader")


_check_fields: Optional[Callable[..., tuple[tuple[Any, ...], bytes]]] = None


def _checked(*fields: object) -> tuple[tuple[Any, ...], bytes]:
    """The checked fields and the encoding (see ``_checks``, imported at first use)."""
    global _check_fields
    if _check_fields is None:
        from ._checks import check_fields  # here: _checks imports this module

        _check_fields = check_fields
    return _check_fields(*fields)


class _ProxyHeaderFields(NamedTuple):
    version: int
    command: Command
    family: socket.AddressFamily
    transport: Optional[socket.SocketKind]
    source: Optional[Address]
    destination: Optional[Address]
    tlvs: tuple[TLV, ...]
    length: int


class ProxyHeader(_ProxyHeaderFields):
    """A parsed (or to-be-encoded) PROXY protocol header. Immutable, hashable, ``==`` by value.

    A tuple of eight fields. ``ProxyHeader(...)`` checks them and raises ``TypeError`` or
    ``ValueError`` for any combination :func:`proxyproto.parse` could not return; ``tlvs``
    may be any iterable of ``(type, value)`` pairs, hosts are put in canonical form, and
    ``length`` defaults to the size of the header's encoding.

    Attributes:
        version: ``1`` or ``2``.
        command: :attr:`Command.PROXY` or :attr:`Command.LOCAL` (v1 is always ``PROXY``).
        family: ``socket.AF_INET``, ``AF_INET6``, ``AF_UNIX`` or ``AF_UNSPEC`` (v1
            ``UNKNOWN`` is ``AF_UNSPEC``). For v2 LOCAL it is the family byte as sent.
        transport: ``socket.SOCK_STREAM``, ``socket.SOCK_DGRAM`` or ``None`` (unspecified,
            exactly when the family is ``AF_UNSPEC``).
        source: the original client: ``(host, port)`` for INET/INET6 (host as
            ``socket.inet_ntop`` writes it), the path for AF_UNIX. ``None`` whenever the
            receiver must use the real connection's addresses (v2 LOCAL, AF_UNSPEC, v1
            ``UNKNOWN``).
        destination: the original destination, same rules as ``source``.
        tlvs: every TLV in wire order (CRC32C and NOOP included, duplicates kept); empty
            for v1.
        length: how many bytes the header took; application data starts there.
    """

    __slots__ = ()  # the eight fields only; the parsers build the tuple without __new__

    def __new__(
        cls,
        version: int,
        command: Union[Command, int],
        family: Union[socket.AddressFamily, int],
        transport: Optional[Union[socket.SocketKind, int]],
        source: Optional[Address],
        destination: Optional[Address],
        tlvs: Iterable[tuple[int, bytes]] = (),
        length: Optional[int] = None,
    ) -> ProxyHeader:
        fields, _ = _checked(version, command, family, transport, source, destination, tlvs,
                             length)
        return tuple.__new__(cls, fields)

    @classmethod
    def _make(  # type: ignore[override]  # mypy's NamedTuple stub types it by the fields
        cls: type[_H], iterable: Iterable[Any]
    ) -> _H:
        """Build from an iterable of the eight fields, checked as by ``ProxyHeader(...)``."""
        return cls(*iterable)

    def _replace(self, **changes: Any) -> ProxyHeader:
        """A copy with some fields changed, checked; ``length`` is recomputed unless given."""
        fields = self._asdict()
        fields["length"] = None
        fields.update(changes)
        return ProxyHeader(**fields)

    # -- equality: by value, and only with other ProxyHeaders (not with plain tuples) --

    def __eq__(self, other: object) -> bool:
        if type(other) is not ProxyHeader:
            return False if isinstance(other, tuple) else NotImplemented
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        if type(other) is not ProxyHeader:
            return True if isinstance(other, tuple) else NotImplemented
        return tuple.__ne__(self, other)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    # -- TLV helpers -----------------------------------------------------------------

    def get_tlv(self, tlv_type: int) -> Optional[bytes]:
        """The value of the first TLV of ``tlv_type``, or ``None`` when absent."""
        for item_type, value in self.tlvs:
            if item_type == tlv_type:
                return value
        return None

    def get_tlvs(self, tlv_type: int) -> tuple[bytes, ...]:
        """The values of every TLV of ``tlv_type``, in wire order."""
        return tuple(value for item_type, value in self.tlvs if item_type == tlv_type)

    @property
    def is_local(self) -> bool:
        """``True`` when the receiver must use the real connection's addresses."""
        return self.source is None

    # Accessors never raise on a header that ``parse`` returned or ``ProxyHeader(...)``
    # accepted: both checked the registered TLVs' encodings.

    @property
    def alpn(self) -> Optional[bytes]:
        """The ALPN TLV (0x01), the negotiated application protocol, e.g. ``b"h2"``."""
        for item_type, value in self.tlvs:
            if item_type == _ALPN:
                return value
        return None

    @property
    def authority(self) -> Optional[str]:
        """The AUTHORITY TLV (0x02), the host name the client asked for (TLS SNI)."""
        for item_type, value in self.tlvs:
            if item_type == _AUTHORITY:
                return value.decode("utf-8")
        return None

    @property
    def crc32c(self) -> Optional[int]:
        """The CRC32C TLV's value as an integer (already verified by ``parse``)."""
        for item_type, value in self.tlvs:
            if item_type == _CRC32C:
                return int.from_bytes(value, "big")
        return None

    @property
    def unique_id(self) -> Optional[bytes]:
        """The UNIQUE_ID TLV (0x05), an opaque connection id of at most 128 bytes."""
        for item_type, value in self.tlvs:
            if item_type == _UNIQUE_ID:
                return value
        return None

    @property
    def netns(self) -> Optional[str]:
        """The NETNS TLV (0x30), the network namespace name."""
        for item_type, value in self.tlvs:
            if item_type == _NETNS:
                return value.decode("ascii")
        return None

    @property
    def ssl(self) -> Optional[SSLInfo]:
        """The SSL TLV (0x20) decoded, with its sub-TLVs.

        Decoded at the first access and kept (by value, so headers with the same SSL TLV
        share one decoding): a later access costs a dictionary lookup.
        """
        for item_type, value in self.tlvs:
            if item_type == _SSL:
                return _decoded_ssl(value)
        return None

    # The vendors' TLVs sit in the custom range 0xE0-0xEF, which other programs use too
    # (hitch puts a client certificate in 0xE0): a TLV without the vendor's layout is not
    # the vendor's, so it is skipped, and the first one with the layout is the answer.

    @property
    def aws_vpce_id(self) -> Optional[str]:
        """AWS VPC endpoint id (TLV 0xEA, subtype 0x01), e.g. ``"vpce-08d2bf15fac5001c9"``.

        ``None`` when no 0xEA TLV has subtype 0x01 followed by ASCII letters, digits and
        ``-`` only.
        """
        for item_type, value in self.tlvs:
            if item_type == _AWS and _AWS_VPCE_ID.match(value) is not None:
                return value[1:].decode("ascii")
        return None

    @property
    def azure_link_id(self) -> Optional[int]:
        """Azure private endpoint link id (TLV 0xEE, subtype 0x01, uint32 little-endian).

        ``None`` when no 0xEE TLV is exactly 5 bytes starting with subtype 0x01.
        """
        for item_type, value in self.tlvs:
            if item_type == _AZURE and len(value) == 5 and value[0] == 0x01:
                return int.from_bytes(value[1:], "little")
        return None

    @property
    def gcp_psc_id(self) -> Optional[int]:
        """Google Cloud PSC connection id (TLV 0xE0, uint64 big-endian, no subtype).

        ``None`` when no 0xE0 TLV is exactly 8 bytes.
        """
        for item_type, value in self.tlvs:
            if item_type == _GCP and len(value) == 8:
                return int.from_bytes(value, "big")
        return None

    def to_bytes(self) -> bytes:
        """Encode this header again (canonically) with the selected implementation.

        A CRC32C TLV, if present, is recomputed and moved to the end; v2 ``LOCAL`` and
        ``AF_UNSPEC`` headers are written as ``LOCAL``; v1 ``UNKNOWN`` as ``PROXY UNKNOWN``.

        Raises:
            TypeError, ValueError: the fields are not a header ``parse`` could return
                (possible only for a tuple built around ``ProxyHeader(...)``'s checks).
        """
        return _checked(*self)[1]

    def __repr__(self) -> str:
        parts = [f"version={self.version}", f"command={self.command.name}",
                 f"family={self.family.name}"]
        if self.transport is not None:
            parts.append(f"transport={self.transport.name}")
        parts.append(f"source={self.source!r}")
        parts.append(f"destination={self.destination!r}")
        if self.tlvs:
            parts.append(f"tlvs={self.tlvs!r}")
        parts.append(f"length={self.length}")
        return f"ProxyHeader({', '.join(parts)})"
