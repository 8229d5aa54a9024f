"""TLV rules R-48..R-60, decisions A-11..A-13, and spec-checklist section 2: the TLV
registry (2.1), the SSL TLV (2.2), CRC32C and its check values (2.3), vendor TLVs (2.4).
"""

from __future__ import annotations

import socket
import struct
from types import ModuleType

import pytest

from cases import (
    AWS_NLB_CAPTURE,
    AWS_NLB_PROPROT,
    check_invalid,
    check_rule,
    check_valid,
    crc32c_reference,
    header,
    tlv,
    v2,
    v2_with_crc,
)
from proxyproto import (
    ChecksumMismatch,
    InvalidHeader,
    SSLClient,
    SSLInfo,
    SSLSubtype,
    TLVType,
)

BLOCK4 = socket.inet_aton("10.1.2.3") + socket.inet_aton("10.4.5.6") + struct.pack("!HH", 1, 2)
SOURCE, DESTINATION = ("10.1.2.3", 1), ("10.4.5.6", 2)


def with_tlvs(*items: tuple[int, bytes]) -> bytes:
    """A PROXY TCP4 header carrying ``items``; its TLVs start at offset 28."""
    return v2(0x21, 0x11, BLOCK4 + b"".join(tlv(t, v) for t, v in items))


def ssl_value(client: int, verify: int, *subs: tuple[int, bytes]) -> bytes:
    """An SSL TLV value: client(1), verify(4, big-endian), sub-TLVs (section 2.2)."""
    return struct.pack("!BI", client, verify) + b"".join(tlv(t, v) for t, v in subs)


def assert_tlvs(impl: ModuleType, *items: tuple[int, bytes]) -> None:
    """A header carrying ``items`` is valid, fed all three ways, and reports them as sent."""
    data = with_tlvs(*items)
    expected = header(data, source=SOURCE, destination=DESTINATION, tlvs=items)
    check_valid(impl.parse, data, expected)


def assert_refused(impl: ModuleType, *items: tuple[int, bytes], offset: int = 28) -> None:
    """A header carrying ``items`` is refused with InvalidHeader at ``offset``."""
    check_invalid(impl.parse, with_tlvs(*items), InvalidHeader, offset)


# [SPEC §2.2] type(1) length(2, BE) value; TLVs tile the header exactly up to 16 + len.
def test_r48_tlvs_tile_the_header(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-48")
    assert valid and invalid
    assert_tlvs(impl, (0x04, b""))  # 3 bytes: the smallest TLV
    assert_tlvs(impl, (0x01, b"h2"), (0x04, b""), (0x04, b""))
    for leftover in (b"\x04", b"\x04\x00"):  # fewer than 3 bytes left for a TLV header
        check_invalid(impl.parse, v2(0x21, 0x11, BLOCK4 + tlv(0x01, b"h2") + leftover),
                      InvalidHeader, 33)
    for excess in (1, 2, 100, 0xFFFD):  # a value that runs past 16 + len
        body = BLOCK4 + struct.pack("!BH", 0x01, 2 + excess) + b"h2"
        check_invalid(impl.parse, v2(0x21, 0x11, body), InvalidHeader, 28)
    # The largest value that fits: 65535 - 3 bytes, in a LOCAL/UNSPEC header.
    big = v2(0x20, 0x00, tlv(0xE9, b"\xab" * 65532))
    result = impl.parse(big)
    assert result.length == 65551 and result.tlvs[0].value == b"\xab" * 65532


# [SPEC §2.2] Unknown TLVs may be skipped; proxyproto keeps every TLV raw, in wire order.
def test_r49_every_tlv_kept_raw_in_order(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-49")
    assert valid
    checked = (TLVType.CRC32C, TLVType.SSL)  # these two have a mandatory value layout
    items = [(t, bytes((t,))) for t in range(256) if t not in checked]
    result = impl.parse(with_tlvs(*items))
    assert [tuple(item) for item in result.tlvs] == items
    assert all(type(item.value) is bytes for item in result.tlvs)


# [SPEC §2.2.3] Sender: build with the value zeroed, CRC32c over the whole header, store.
def test_r50_sender_computes_crc32c_last(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-50")
    assert valid
    for source, destination in ((SOURCE, DESTINATION), (None, None),
                                (("2001:db8::1", 1), ("2001:db8::2", 2)), ("/a", "/b")):
        data = impl.encode_v2(source, destination, tlvs=[(0x01, b"h2")], crc32c=True)
        assert data[-7:-4] == b"\x03\x00\x04"  # appended last
        zeroed = data[:-4] + bytes(4)
        assert data[-4:] == crc32c_reference(zeroed).to_bytes(4, "big")
        assert impl.parse(data).crc32c == crc32c_reference(zeroed)


# [SPEC §2.2.3] Receiver: zero the field, CRC32c the whole header, compare; a mismatch
# makes the connection invalid (ChecksumMismatch, an InvalidHeader).
def test_r51_receiver_verifies_crc32c(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-51")
    assert valid and invalid
    data, _ = v2_with_crc(0x21, 0x11, BLOCK4, [(0x01, b"http/1.1"), (0xE2, b"value")], 1)
    impl.parse(data)
    crc_tlv = data.index(b"\x03\x00\x04")
    # Every byte of the addresses and of the other TLVs' values is covered.
    protected = list(range(16, 28)) + list(range(31, 39)) + list(range(49, 54))
    for index in protected:
        tampered = data[:index] + bytes((data[index] ^ 0x20,)) + data[index + 1 :]
        with pytest.raises(ChecksumMismatch) as info:
            impl.parse(tampered)
        assert info.value.offset == crc_tlv
        assert isinstance(info.value, InvalidHeader)
    # The payload after the header is not covered.
    assert impl.parse(data + b"anything").length == len(data)


# [SPEC §2.2.4] NOOP: ignored, any length (padding of 3 bytes or more).
def test_r52_noop_is_padding(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-52")
    assert valid
    for size in (0, 1, 36, 1000):
        assert_tlvs(impl, (0x04, b"\x00" * size), (0x01, b"h2"))
    result = impl.parse(with_tlvs((0x04, b"\xff" * 10), (0x02, b"host")))
    assert result.authority == "host" and result.alpn is None


# [SPEC §2.2.5] UNIQUE_ID: opaque, at most 128 bytes.
def test_r53_unique_id_at_most_128_bytes(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-53")
    assert valid and invalid
    for size in (0, 1, 127, 128):
        value = bytes(range(size))
        assert_tlvs(impl, (0x05, value))
        assert impl.parse(with_tlvs((0x05, value))).unique_id == value
    for size in (129, 200, 1000):
        assert_refused(impl, (0x05, b"u" * size))


# [SPEC §2.2.6] SSL: packed {uint8 client; uint32 verify; sub-TLVs}, at least 5 bytes, the
# sub-TLVs tiling the value exactly.
def test_r54_ssl_tlv_layout(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-54")
    assert valid and invalid
    value = ssl_value(0x05, 0x00000000, (0x21, b"TLSv1.2"), (0x23, b"AES128-SHA"))
    assert value[:5] == b"\x05\x00\x00\x00\x00"  # packed: verify right after client
    info = impl.parse(with_tlvs((0x20, value))).ssl
    assert isinstance(info, SSLInfo)
    assert (info.client, info.verify, info.version, info.cipher) == (5, 0, "TLSv1.2", "AES128-SHA")
    assert info.sub_tlvs == ((0x21, b"TLSv1.2"), (0x23, b"AES128-SHA"))
    for size in range(5):
        assert_refused(impl, (0x20, bytes(size)))
    for broken in (b"\x21", b"\x21\x00", b"\x21\x00\x05TLS", b"\x21\x00\x01ab"):
        assert_refused(impl, (0x20, bytes(5) + broken))


# [SPEC §2.2.6] verify: zero iff a certificate was presented and verified; big-endian.
def test_r55_verify_is_big_endian(impl: ModuleType) -> None:
    info = impl.parse(with_tlvs((0x20, ssl_value(0x03, 0x01020304)))).ssl
    assert info is not None and info.verify == 0x01020304 and not info.verified
    info = impl.parse(with_tlvs((0x20, ssl_value(0x03, 0)))).ssl
    assert info is not None and info.verify == 0 and info.verified


# [SPEC §2.2.6] client bits: 0x01 SSL, 0x02 CERT_CONN, 0x04 CERT_SESS.
def test_r56_client_bits(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-56")
    assert valid
    assert (SSLClient.SSL, SSLClient.CERT_CONN, SSLClient.CERT_SESS) == (1, 2, 4)
    for client in range(256):
        info = impl.parse(with_tlvs((0x20, ssl_value(client, 0)))).ssl
        assert info is not None and info.client == client
        assert info.client_ssl == bool(client & 1)
        assert info.client_cert_conn == bool(client & 2)
        assert info.client_cert_sess == bool(client & 4)


# [SPEC §2.2.6] The client certificate's CN, UTF-8 (optional in practice, A-12).
def test_r57_ssl_cn_is_utf8(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-57")
    assert valid and invalid
    cn = "J\u00fcrgen \u6f22\u5b57"
    info = impl.parse(with_tlvs((0x20, ssl_value(7, 0, (0x22, cn.encode()))))).ssl
    assert info is not None and info.cn == cn
    assert_refused(impl, (0x20, ssl_value(7, 0, (0x22, b"\xed\xa0\x80"))))  # a surrogate


# [SPEC §2.2.7] NETNS: a US-ASCII namespace name.
def test_r58_netns_is_ascii(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-58")
    assert valid and invalid
    assert impl.parse(with_tlvs((0x30, b"blue-ns"))).netns == "blue-ns"
    assert_refused(impl, (0x30, b"\x80"))


# [SPEC §2.2.8] 0xE0-0xEF application-specific, 0xF0-0xF7 experiments, 0xF8-0xFF future:
# all kept raw.
def test_r59_reserved_ranges_kept_raw(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "R-59")
    assert valid
    items = [(t, b"\x00\xff" + bytes((t,))) for t in range(0xE0, 0x100)]
    assert_tlvs(impl, *items)


# [SPEC §2.2] Value encodings: ALPN and UNIQUE_ID opaque; AUTHORITY and CN UTF-8; VERSION,
# CIPHER, SIG_ALG, KEY_ALG, GROUP, SIG_SCHEME, NETNS US-ASCII; CLIENT_CERT DER.
def test_r60_value_encodings(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "R-60")
    assert valid and invalid
    opaque = bytes(range(256))[:128]
    result = impl.parse(with_tlvs((0x01, opaque), (0x05, opaque),
                                  (0x02, "\u00fcber.example".encode())))
    assert (result.alpn, result.unique_id, result.authority) == (opaque, opaque,
                                                                "\u00fcber.example")
    assert_refused(impl, (0x02, b"caf\xe9"))  # Latin-1, not UTF-8
    names = {0x21: "version", 0x23: "cipher", 0x24: "sig_alg", 0x25: "key_alg",
             0x26: "group", 0x27: "sig_scheme"}
    for sub_type, field in names.items():
        info = impl.parse(with_tlvs((0x20, ssl_value(1, 0, (sub_type, b"ascii-1.0"))))).ssl
        assert getattr(info, field) == "ascii-1.0"
        assert_refused(impl, (0x20, ssl_value(1, 0, (sub_type, "\u00e9".encode()))))
    der = b"\x30\x82\x01\x0a\x02\x82\x01\x01\x00\xff"
    info = impl.parse(with_tlvs((0x20, ssl_value(7, 0, (0x28, der))))).ssl
    assert info is not None and info.client_cert == der


# CRC32C stored big-endian; length other than 4 refused; a second one refused.
def test_a11_crc32c_length_duplicates_byte_order(impl: ModuleType) -> None:
    valid, invalid = check_rule(impl.parse, "A-11")
    assert valid and invalid
    data, _ = v2_with_crc(0x21, 0x11, BLOCK4, [], 0)
    swapped = data[:-4] + data[-4:][::-1]  # the same CRC stored little-endian
    if swapped != data:
        check_invalid(impl.parse, swapped, ChecksumMismatch, 28)


# HAProxy sends an empty SSL TLV (client 0, verify 0) on plain frontends: that means
# "no certificate", not "verified"; every sub-TLV is optional.
def test_a12_empty_ssl_tlv_is_not_verified(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-12")
    assert valid
    info = impl.parse(with_tlvs((0x20, bytes(5)))).ssl
    assert info == SSLInfo(0, 0)
    assert not info.verified and not info.client_ssl and info.cn is None
    info = impl.parse(with_tlvs((0x20, ssl_value(1, 0, (0x21, b"TLSv1.3"))))).ssl
    assert info is not None and info.client_ssl and not info.verified and info.cn is None


# ALPN is opaque: HAProxy sends the negotiated protocol, not the RFC 7301 list.
def test_a13_alpn_is_opaque(impl: ModuleType) -> None:
    valid, _ = check_rule(impl.parse, "A-13")
    assert valid
    for value in (b"h2", b"http/1.1", b"\x02h2\x08http/1.1", b"\xff\x00"):
        assert impl.parse(with_tlvs((0x01, value))).alpn == value


# Section 2.1: the registry's type numbers.
def test_tlv_registry_section_2_1() -> None:
    assert {t.name: int(t) for t in TLVType} == {
        "ALPN": 0x01, "AUTHORITY": 0x02, "CRC32C": 0x03, "NOOP": 0x04, "UNIQUE_ID": 0x05,
        "SSL": 0x20, "NETNS": 0x30, "GCP": 0xE0, "AWS": 0xEA, "AZURE": 0xEE,
    }
    assert {t.name: int(t) for t in SSLSubtype} == {
        "VERSION": 0x21, "CN": 0x22, "CIPHER": 0x23, "SIG_ALG": 0x24, "KEY_ALG": 0x25,
        "GROUP": 0x26, "SIG_SCHEME": 0x27, "CLIENT_CERT": 0x28,
    }


# Section 2.2: HAProxy's SSL TLV {VERSION, CN, KEY_ALG, SIG_ALG, CIPHER}, decoded.
def test_ssl_tlv_section_2_2_haproxy_layout(impl: ModuleType) -> None:
    value = ssl_value(0x07, 0, (0x21, b"TLSv1.3"), (0x22, b"client.example"),
                      (0x25, b"RSA2048"), (0x24, b"RSA-SHA256"),
                      (0x23, b"TLS_AES_256_GCM_SHA384"))
    assert struct.unpack("!BH", tlv(0x20, value)[:3]) == (0x20, 5 + sum(
        3 + len(v) for v in (b"TLSv1.3", b"client.example", b"RSA2048", b"RSA-SHA256",
                             b"TLS_AES_256_GCM_SHA384")))
    info = impl.parse(with_tlvs((0x20, value))).ssl
    assert info is not None
    assert (info.version, info.cn, info.key_alg, info.sig_alg, info.cipher) == (
        "TLSv1.3", "client.example", "RSA2048", "RSA-SHA256", "TLS_AES_256_GCM_SHA384")
    assert info.verified and info.group is None and info.client_cert is None


# Section 2.3: CRC-32C check values (RFC 3720 B.4, HAProxy reg-tests hashes.vtc).
CHECK_VALUES = [
    (b"123456789", 0xE3069283),
    (b"\x00" * 32, 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(256)), 2621708363),
]


@pytest.mark.parametrize(("data", "value"), CHECK_VALUES, ids=["123456789", "zeros",
                                                                "ones", "00..ff"])
def test_crc32c_check_values_section_2_3(impl: ModuleType, data: bytes, value: int) -> None:
    assert crc32c_reference(data) == value
    assert impl.crc32c(data) == value
    assert impl.crc32c(bytearray(data)) == value
    assert impl.crc32c(memoryview(data)) == value
    # Continuation: the CRC of a+b from the CRC of a.
    half = len(data) // 2
    assert impl.crc32c(data[half:], impl.crc32c(data[:half])) == value
    assert impl.crc32c(b"") == 0


def test_crc32c_real_aws_headers_section_2_3(impl: ModuleType) -> None:
    # cowboy#1340 compared the CRC as an integer against binary and refused real AWS
    # headers; both real captures verify under the big-endian rule.
    for data in (AWS_NLB_PROPROT, AWS_NLB_CAPTURE):
        zeroed = data[:31] + bytes(4) + data[35:]
        assert data[31:35] == crc32c_reference(zeroed).to_bytes(4, "big")
        assert impl.parse(data).crc32c == int.from_bytes(data[31:35], "big")


# Section 2.4: vendor TLVs. They live in the custom range 0xE0-0xEF, which other programs
# use too: a TLV without the vendor's layout is not the vendor's (issue 9 item 4), the
# accessor skips it, and the first TLV with the layout wins (as go-proxyproto does).
def test_vendor_aws_vpce_id_section_2_4(impl: ModuleType) -> None:
    assert impl.parse(AWS_NLB_PROPROT).aws_vpce_id == "vpce-08d2bf15fac5001c9"
    assert impl.parse(AWS_NLB_CAPTURE).aws_vpce_id == "vpce-00eafc458ec97b833"
    result = impl.parse(AWS_NLB_CAPTURE)
    assert result.get_tlv(TLVType.NOOP) == bytes(36)
    assert [t.type for t in result.tlvs] == [0x03, 0xEA, 0x04]
    # Another subtype, or characters other than [A-Za-z0-9-]: not a VPC endpoint id.
    assert impl.parse(with_tlvs((0xEA, b"\x02vpce-1"))).aws_vpce_id is None
    assert impl.parse(with_tlvs((0xEA, b"\x01vcpe-!?***&&"))).aws_vpce_id is None
    assert impl.parse(with_tlvs((0xEA, b"\x01vpce-1\n"))).aws_vpce_id is None
    assert impl.parse(with_tlvs((0xEA, b"\x01"))).aws_vpce_id == ""
    assert impl.parse(with_tlvs(
        (0xEA, b"\x01not an id"), (0xEA, b"\x02vpce-2"), (0xEA, b"\x01vpce-3"),
    )).aws_vpce_id == "vpce-3"


def test_vendor_azure_link_id_section_2_4(impl: ModuleType) -> None:
    # go-proxyproto's vectors: subtype 1 + uint32 little-endian; other subtypes skipped.
    result = impl.parse(with_tlvs(
        (0xEA, b"\x01vpce-abc123"),
        (0xEE, b"\x02\x01\x01\x01\x01"),
        (0xEE, b"\x02\x01\x01"),
        (0xEE, b"\x01\xc1\x45\x00\x21"),
        (0xEE, b"\x01\xc1\x45\x00\x22"),
    ))
    assert result.azure_link_id == 0x210045C1
    assert impl.parse(with_tlvs((0xEE, b"\x02\x01\x01\x01\x01"))).azure_link_id is None
    assert impl.parse(with_tlvs((0xEE, b"\x01\x01\x01"))).azure_link_id is None
    assert impl.parse(with_tlvs((0xEE, b"\x01\x01\x01\x01\x01\x01"))).azure_link_id is None
    assert impl.parse(with_tlvs(
        (0xEE, b"\x01\x01\x01"), (0xEE, b"\x01\x02\x00\x00\x00"),
    )).azure_link_id == 2


def test_vendor_gcp_psc_id_section_2_4(impl: ModuleType) -> None:
    value = bytes.fromhex("ffffffffc0a86402")
    assert impl.parse(with_tlvs((0xE0, value))).gcp_psc_id == 18446744072646845442
    assert impl.parse(with_tlvs((0xEA, b"\x01vpce-1"))).gcp_psc_id is None
    # A 0xE0 TLV of another length is not a PSC id: a later 8-byte one is the answer.
    assert impl.parse(with_tlvs((0xE0, b"\xff\xff\xff"))).gcp_psc_id is None
    assert impl.parse(with_tlvs((0xE0, b"\xff\xff\xff"), (0xE0, value))).gcp_psc_id == (
        18446744072646845442
    )


HITCH_PEM = (
    b"-----BEGIN CERTIFICATE-----\n"
    b"MIIBszCCAVmgAwIBAgIUXk0FAKEfakeFAKEfakeFAKEfake0wCgYIKoZIzj0EAwIw\n"
    b"-----END CERTIFICATE-----\n"
)


def test_vendor_accessors_never_raise_on_foreign_custom_tlvs(impl: ModuleType) -> None:
    """Issue 9 item 4: hitch's client-certificate PEM in 0xE0 (and other programs' data
    in 0xEA/0xEE) is not a vendor id: every accessor gives ``None``, the TLVs stay raw."""
    items = ((0xE0, HITCH_PEM), (0xEA, b"\x01" + HITCH_PEM), (0xEE, b"\x01\x00"),
             (0xE0, b""), (0xEA, b""), (0xEE, b""))
    result = impl.parse(with_tlvs(*items))
    assert (result.gcp_psc_id, result.aws_vpce_id, result.azure_link_id) == (None, None, None)
    assert [tuple(t) for t in result.tlvs] == list(items)
    for name in ("alpn", "authority", "crc32c", "unique_id", "netns", "ssl", "is_local"):
        getattr(result, name)
