#!/usr/bin/env python3
"""Write the seed corpus: one file per header shape, valid ones and the hostile classics.

Run from anywhere; it (re)writes ``fuzz/corpus/parse/gen-*.bin`` and
``fuzz/corpus/encode/gen-*.bin``. The captures of real senders (``haproxy-*.bin``,
``curl-*.bin``) come from ``capture_real.py`` and are left alone.

The seeds are built with the pure-Python encoder where they are valid, and by hand where
they are not (the CVE shapes of ``shared/landscape.md``: truncated address blocks, an
oversize length, overrunning and nested TLVs, undefined family bytes, an endless v1 line).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from proxyproto import _fallback as pp  # noqa: E402

SIG = pp.V2_SIGNATURE
PAYLOAD = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
CLIENT_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32))


def tlv(tlv_type: int, value: bytes) -> bytes:
    """One raw TLV."""
    return struct.pack("!BH", tlv_type, len(value)) + value


def v2_raw(command: int, family: int, body: bytes, length: int | None = None) -> bytes:
    """A v2 header built by hand (``length`` overrides the real body length)."""
    size = len(body) if length is None else length
    return SIG + bytes((0x20 | command, family)) + struct.pack("!H", size) + body


def ssl_value(client: int, verify: int, *subs: tuple[int, bytes]) -> bytes:
    """An SSL TLV value with sub-TLVs."""
    return bytes((client,)) + struct.pack("!I", verify) + b"".join(tlv(t, v) for t, v in subs)


def valid_seeds() -> dict[str, bytes]:
    """Headers every conforming parser must accept (with some payload after a few)."""
    ip4 = (("192.0.2.1", 51000), ("198.51.100.2", 443))
    ip6 = (("2001:db8::1", 51000), ("2001:db8:0:1::2", 443))
    ssl = ssl_value(
        0x07, 0,
        (0x21, b"TLSv1.3"), (0x22, b"client.example.com"), (0x25, b"RSA2048"),
        (0x24, b"RSA-SHA256"), (0x23, b"TLS_AES_256_GCM_SHA384"), (0x26, b"X25519"),
        (0x27, b"rsa_pss_rsae_sha256"), (0x28, bytes(range(256)) * 2),
    )
    return {
        "v1-tcp4": pp.encode_v1(*ip4),
        "v1-tcp4-payload": pp.encode_v1(*ip4) + PAYLOAD,
        "v1-tcp4-ports-0-65535": pp.encode_v1(("0.0.0.0", 0), ("255.255.255.255", 65535)),
        "v1-tcp6": pp.encode_v1(*ip6),
        "v1-tcp6-mapped": b"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:198.51.100.2 1 2\r\n",
        "v1-tcp6-longest": b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7
        + b"ffff 65535 65535\r\n",
        "v1-unknown": pp.encode_v1(None, None) + PAYLOAD,
        "v1-unknown-long": b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n",
        "v2-local": pp.encode_v2(None, None),
        "v2-local-crc32c": pp.encode_v2(None, None, crc32c=True),
        "v2-local-inet-block": v2_raw(0, 0x11, bytes(12)) + PAYLOAD,
        "v2-local-unspec-tlv": v2_raw(0, 0x00, tlv(0x04, b"")),
        "v2-tcp4": pp.encode_v2(*ip4) + CLIENT_HELLO,
        "v2-udp4": pp.encode_v2(*ip4, transport=socket.SOCK_DGRAM),
        "v2-tcp6": pp.encode_v2(*ip6),
        "v2-udp6-mapped": pp.encode_v2(("192.0.2.1", 53), ("::1", 53),
                                       transport=socket.SOCK_DGRAM),
        "v2-unix": pp.encode_v2("/run/app.sock", "/run/lb.sock"),
        "v2-unix-dgram-abstract": pp.encode_v2(b"\x00app", b"\x00l\x00b",
                                               transport=socket.SOCK_DGRAM),
        "v2-proxy-unspec": v2_raw(1, 0x00, b""),
        "v2-tcp4-tlvs": pp.encode_v2(
            *ip4, tlvs=[(0x01, b"h2"), (0x02, b"api.example.com"), (0x05, bytes(16)),
                        (0x04, b""), (0x30, b"blue")], crc32c=True),
        "v2-tcp6-ssl-full": pp.encode_v2(*ip6, tlvs=[(0x20, ssl)], crc32c=True),
        "v2-tcp4-ssl-empty": pp.encode_v2(*ip4, tlvs=[(0x20, ssl_value(0, 0))]),
        "v2-crc32c-first": v2_raw(1, 0x11, bytes(12)),  # replaced below
        "v2-aws-nlb": pp.encode_v2(*ip4, tlvs=[(0xEA, b"\x01vpce-08d2bf15fac5001c9")]),
        "v2-azure": pp.encode_v2(*ip6, tlvs=[(0xEE, b"\x01\x2a\x00\x00\x00")]),
        "v2-gcp-psc": pp.encode_v2(*ip4, tlvs=[(0xE0, struct.pack("!Q", 123456789))]),
        "v2-duplicates": pp.encode_v2(*ip4, tlvs=[(0x01, b"h2"), (0x01, b"http/1.1"),
                                                  (0xC0, b""), (0xC0, b"x")]),
        "v2-zero-length-tlv-last": pp.encode_v2(*ip4, tlvs=[(0x01, b"h2"), (0x04, b"")]),
    }


def nested_ssl() -> bytes:
    """CVE-2022-41881 (Netty): SSL sub-TLVs that look like SSL TLVs, 40 deep.

    Valid: a sub-TLV of type 0x20 is an unknown sub-type, kept raw and never recursed into.
    """
    nested = b""
    for _ in range(40):
        nested = ssl_value(1, 0, (0x20, nested))
    return pp.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), tlvs=[(0x20, nested)])


def crc_first() -> bytes:
    """HAProxy's layout: the CRC32C TLV first, then the others."""
    body = bytes(12) + tlv(0x03, bytes(4)) + tlv(0x01, b"h2") + tlv(0x02, b"example.com")
    header = bytearray(v2_raw(1, 0x11, body))
    crc = pp.crc32c(bytes(header))
    header[31:35] = crc.to_bytes(4, "big")
    return bytes(header)


def hostile_seeds() -> dict[str, bytes]:
    """The shapes behind other implementations' CVEs and bugs; each must be refused."""
    ip4_block = bytes((192, 0, 2, 1, 198, 51, 100, 2)) + struct.pack("!HH", 1, 2)
    bad_crc = bytearray(pp.encode_v2(("192.0.2.1", 1), ("192.0.2.2", 2), crc32c=True))
    bad_crc[-1] ^= 0xFF
    return {
        # CVE-2021-23351: a v1 line that never ends
        "bad-v1-endless": b"PROXY TCP4 " + b"1" * 200,
        "bad-v1-no-crlf-107": b"PROXY UNKNOWN " + b"x" * 100,
        "bad-v1-lf-only": b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n",
        "bad-v1-plus-port": b"PROXY TCP4 192.0.2.1 192.0.2.2 +1 2\r\n",
        "bad-v1-octet-256": b"PROXY TCP4 256.0.2.1 192.0.2.2 1 2\r\n",
        "bad-v1-port-65536": b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 2\r\n",
        "bad-v1-zone": b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
        "bad-v1-mixed": b"PROXY TCP6 2001:db8::1 192.0.2.1 1 2\r\n",
        "bad-v1-lowercase": b"proxy TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
        # CVE-2019-14243: the length stops inside the address block
        "bad-v2-truncated-inet": v2_raw(1, 0x11, ip4_block[:8]),
        "bad-v2-truncated-inet6": v2_raw(1, 0x21, bytes(20)),
        "bad-v2-truncated-unix": v2_raw(1, 0x31, bytes(100)),
        "bad-v2-short-read": v2_raw(1, 0x11, ip4_block, length=12)[:20],
        "bad-v2-oversize-len": v2_raw(1, 0x11, ip4_block, length=0xFFFF) + bytes(64),
        # go-proxyproto < 0.15: a defined nibble with an undefined transport
        "bad-v2-family-13": v2_raw(1, 0x13, ip4_block),
        "bad-v2-family-10": v2_raw(1, 0x10, ip4_block),
        "bad-v2-family-41": v2_raw(1, 0x41, ip4_block),
        "bad-v2-version-3": SIG + b"\x31\x11\x00\x0c" + ip4_block,
        "bad-v2-command-2": SIG + b"\x22\x11\x00\x0c" + ip4_block,
        "bad-v2-tlv-overrun": v2_raw(1, 0x11, ip4_block + b"\x01\x00\x10h2"),
        "bad-v2-tlv-truncated-header": v2_raw(1, 0x11, ip4_block + b"\x01\x00"),
        "bad-v2-ssl-short": v2_raw(1, 0x11, ip4_block + tlv(0x20, b"\x01\x00")),
        "bad-v2-crc32c": bytes(bad_crc),
        "bad-v2-two-crc32c": v2_raw(1, 0x00, tlv(0x03, bytes(4)) * 2),
        "bad-v2-authority-not-utf8": v2_raw(1, 0x11, ip4_block + tlv(0x02, b"\xff\xfe")),
        "bad-v2-unique-id-129": v2_raw(1, 0x11, ip4_block + tlv(0x05, bytes(129))),
        "bad-v2-local-bad-tlv": v2_raw(0, 0x00, b"\x01\x00\x05ab"),
        "bad-not-proxy-http": b"GET / HTTP/1.1\r\n\r\n",
        "bad-not-proxy-tls": CLIENT_HELLO,
        "bad-v2-signature-typo": SIG[:11] + b"\x0b\x21\x11\x00\x0c" + ip4_block,
    }


def write(folder: str, seeds: dict[str, bytes]) -> None:
    """Replace the generated seeds of ``folder`` with ``seeds``."""
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.startswith("gen-"):
            os.remove(os.path.join(folder, name))
    for name, data in sorted(seeds.items()):
        with open(os.path.join(folder, f"gen-{name}.bin"), "wb") as handle:
            handle.write(data)


def main() -> None:
    """Write both corpora."""
    parse_seeds = valid_seeds()
    parse_seeds["v2-crc32c-first"] = crc_first()
    parse_seeds["v2-ssl-nested-40"] = nested_ssl()
    for name, data in parse_seeds.items():
        assert pp.parse(data).length <= len(data), name
    bad = hostile_seeds()
    for name, data in bad.items():
        try:
            pp.parse(data)
        except pp.IncompleteHeader:
            assert name in ("bad-v2-short-read", "bad-v2-oversize-len", "bad-v1-endless"), name
        except ValueError:
            pass
        else:
            raise AssertionError(f"hostile seed {name} parsed")
    parse_seeds.update(bad)
    write(os.path.join(HERE, "corpus", "parse"), parse_seeds)
    rng = random.Random(20240601)
    encode_seeds = {f"random-{i:02d}": rng.randbytes(rng.randrange(8, 160)) for i in range(24)}
    write(os.path.join(HERE, "corpus", "encode"), encode_seeds)
    print(f"wrote {len(parse_seeds)} parse seeds and {len(encode_seeds)} encode seeds")


if __name__ == "__main__":
    main()
