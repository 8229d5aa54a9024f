"""Value types: :class:`ProxyHeader`, :class:`TLV`, :class:`SSLInfo` and the enums.

Both implementations of the parser (Cython and pure Python) build these same classes, so
results compare equal whichever implementation produced them.
"""

from __future__ import annotations

import enum
import socket
from typing import NamedTuple, Optional, Union

from ._errors import InvalidHeader

__all__ = [
    "Address",
    "Command",
    "ProxyHeader",
    "SSLClient",
    "SSLInfo",
    "SSLSubtype",
    "TLV",
    "TLVType",
]

#: An address as found in a header: ``(host, port)`` for INET/INET6, a path for AF_UNIX
#: (``str``; ``bytes`` for a Linux abstract name, whose first byte is NUL).
Address = Union[tuple[str, int], str, bytes]


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


_SSL_FIELDS = {
    SSLSubtype.VERSION: "version",
    SSLSubtype.CN: "cn",
    SSLSubtype.CIPHER: "cipher",
    SSLSubtype.SIG_ALG: "sig_alg",
    SSLSubtype.KEY_ALG: "key_alg",
    SSLSubtype.GROUP: "group",
    SSLSubtype.SIG_SCHEME: "sig_scheme",
}


def decode_ssl(value: bytes) -> SSLInfo:
    """Decode an SSL TLV value (already validated by the parser).

    Raises:
        InvalidHeader: the value is malformed (only for values that did not come from
            :func:`proxyproto.parse`).
    """
    if len(value) < 5:
        raise InvalidHeader(f"SSL TLV value is {len(value)} bytes, at least 5 required")
    fields: dict[str, object] = {}
    subs: list[TLV] = []
    pos, end = 5, len(value)
    while pos < end:
        if end - pos < 3:
            raise InvalidHeader("truncated SSL sub-TLV header")
        sub_type = value[pos]
        sub_len = (value[pos + 1] << 8) | value[pos + 2]
        if pos + 3 + sub_len > end:
            raise InvalidHeader(f"SSL sub-TLV 0x{sub_type:02x} runs past the SSL TLV")
        sub_value = bytes(value[pos + 3 : pos + 3 + sub_len])
        subs.append(TLV(sub_type, sub_value))
        name = _SSL_FIELDS.get(sub_type)  # type: ignore[call-overload]
        if name is not None and name not in fields:
            encoding = "utf-8" if sub_type == SSLSubtype.CN else "ascii"
            try:
                fields[name] = sub_value.decode(encoding)
            except UnicodeDecodeError:
                raise InvalidHeader(
                    f"SSL sub-TLV 0x{sub_type:02x} is not valid {encoding}"
                ) from None
        elif sub_type == SSLSubtype.CLIENT_CERT and "client_cert" not in fields:
            fields["client_cert"] = sub_value
        pos += 3 + sub_len
    verify = int.from_bytes(value[1:5], "big")
    return SSLInfo(value[0], verify, sub_tlvs=tuple(subs), **fields)  # type: ignore[arg-type]


class ProxyHeader(NamedTuple):
    """A parsed (or to-be-encoded) PROXY protocol header. Immutable, hashable, ``==`` by value.

    Attributes:
        version: ``1`` or ``2``.
        command: :attr:`Command.PROXY` or :attr:`Command.LOCAL` (v1 is always ``PROXY``).
        family: ``socket.AF_INET``, ``AF_INET6``, ``AF_UNIX`` or ``AF_UNSPEC`` (v1
            ``UNKNOWN`` is ``AF_UNSPEC``). For v2 LOCAL it is the family byte as sent.
        transport: ``socket.SOCK_STREAM``, ``socket.SOCK_DGRAM`` or ``None`` (unspecified).
        source: the original client: ``(host, port)`` for INET/INET6 (host as
            ``socket.inet_ntop`` writes it), the path for AF_UNIX. ``None`` whenever the
            receiver must use the real connection's addresses (v2 LOCAL, AF_UNSPEC, v1
            ``UNKNOWN``).
        destination: the original destination, same rules as ``source``.
        tlvs: every TLV in wire order (CRC32C and NOOP included, duplicates kept); empty
            for v1.
        length: how many bytes the header took; application data starts there.
    """

    version: int
    command: Command
    family: socket.AddressFamily
    transport: Optional[socket.SocketKind]
    source: Optional[Address]
    destination: Optional[Address]
    tlvs: tuple[TLV, ...]
    length: int

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
        for tlv in self.tlvs:
            if tlv[0] == tlv_type:
                return tlv[1]
        return None

    def get_tlvs(self, tlv_type: int) -> tuple[bytes, ...]:
        """The values of every TLV of ``tlv_type``, in wire order."""
        return tuple(tlv[1] for tlv in self.tlvs if tlv[0] == tlv_type)

    @property
    def is_local(self) -> bool:
        """``True`` when the receiver must use the real connection's addresses."""
        return self.source is None

    @property
    def alpn(self) -> Optional[bytes]:
        """The ALPN TLV (0x01): the negotiated application protocol, e.g. ``b"h2"``."""
        return self.get_tlv(TLVType.ALPN)

    @property
    def authority(self) -> Optional[str]:
        """The AUTHORITY TLV (0x02): the host name the client asked for (TLS SNI)."""
        value = self.get_tlv(TLVType.AUTHORITY)
        return None if value is None else value.decode("utf-8")

    @property
    def crc32c(self) -> Optional[int]:
        """The CRC32C TLV's value as an integer (already verified by ``parse``)."""
        value = self.get_tlv(TLVType.CRC32C)
        return None if value is None else int.from_bytes(value, "big")

    @property
    def unique_id(self) -> Optional[bytes]:
        """The UNIQUE_ID TLV (0x05): an opaque connection id of at most 128 bytes."""
        return self.get_tlv(TLVType.UNIQUE_ID)

    @property
    def netns(self) -> Optional[str]:
        """The NETNS TLV (0x30): the network namespace name."""
        value = self.get_tlv(TLVType.NETNS)
        return None if value is None else value.decode("ascii")

    @property
    def ssl(self) -> Optional[SSLInfo]:
        """The SSL TLV (0x20) decoded, with its sub-TLVs."""
        value = self.get_tlv(TLVType.SSL)
        return None if value is None else decode_ssl(value)

    def _vendor(self, tlv_type: int, subtype: int) -> Optional[bytes]:
        for tlv in self.tlvs:
            if tlv[0] == tlv_type and tlv[1][:1] == bytes((subtype,)):
                return tlv[1][1:]
        return None

    @property
    def aws_vpce_id(self) -> Optional[str]:
        """AWS VPC endpoint id (TLV 0xEA, subtype 0x01), e.g. ``"vpce-08d2bf15fac5001c9"``.

        Raises:
            InvalidHeader: the TLV is present but is not ASCII letters, digits and ``-``.
        """
        value = self._vendor(TLVType.AWS, AWS_SUBTYPE_VPCE_ID)
        if value is None:
            return None
        if not all(c == 0x2D or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A
                   for c in value):
            raise InvalidHeader("AWS VPC endpoint id TLV holds characters other than [A-Za-z0-9-]")
        return value.decode("ascii")

    @property
    def azure_link_id(self) -> Optional[int]:
        """Azure private endpoint link id (TLV 0xEE, subtype 0x01, uint32 little-endian).

        Raises:
            InvalidHeader: the TLV is present but its value is not exactly 5 bytes.
        """
        value = self._vendor(TLVType.AZURE, AZURE_SUBTYPE_PRIVATEENDPOINT_LINKID)
        if value is None:
            return None
        if len(value) != 4:
            raise InvalidHeader(f"Azure link id TLV is {len(value) + 1} bytes, expected 5")
        return int.from_bytes(value, "little")

    @property
    def gcp_psc_id(self) -> Optional[int]:
        """Google Cloud PSC connection id (TLV 0xE0, uint64 big-endian, no subtype).

        Raises:
            InvalidHeader: the TLV is present but its value is not exactly 8 bytes.
        """
        value = self.get_tlv(TLVType.GCP)
        if value is None:
            return None
        if len(value) != 8:
            raise InvalidHeader(f"GCP PSC connection id TLV is {len(value)} bytes, expected 8")
        return int.from_bytes(value, "big")

    def to_bytes(self) -> bytes:
        """Encode this header again (canonically) with the selected implementation.

        A CRC32C TLV, if present, is recomputed and moved to the end; v2 ``LOCAL`` and
        ``AF_UNSPEC`` headers are written as ``LOCAL``; v1 ``UNKNOWN`` as ``PROXY UNKNOWN``.
        """
        from ._impl import encode_v1, encode_v2

        if self.version == 1:
            return encode_v1(self.source, self.destination)  # type: ignore[arg-type]
        tlvs = [t for t in self.tlvs if t[0] != TLVType.CRC32C]
        return encode_v2(
            self.source,
            self.destination,
            transport=self.transport or socket.SOCK_STREAM,
            tlvs=tlvs,
            crc32c=len(tlvs) != len(self.tlvs),
        )

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
