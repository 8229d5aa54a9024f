"""Decode a few real-world PROXY headers and print what a server learns from them.

Run: python examples/decode_headers.py
"""

from __future__ import annotations

import proxyproto

SAMPLES = {
    # What Traefik sends to a TCP backend (v2, IPv4, no TLVs).
    "Traefik v2 TCP4": proxyproto.encode_v2(("203.0.113.7", 51234), ("10.42.0.15", 8443)),
    # What nginx' stream module and curl --haproxy-protocol send (v1).
    "nginx/curl v1": b"PROXY TCP4 198.51.100.22 10.0.0.5 40112 443\r\n",
    "v1 IPv6": b"PROXY TCP6 2001:db8::1 2001:db8::2 40112 443\r\n",
    # A load balancer's health check.
    "health check (v2 LOCAL)": proxyproto.encode_v2(None, None),
    # What an AWS NLB behind PrivateLink sends: CRC32C, the VPC endpoint id, NOOP padding.
    "AWS NLB": proxyproto.encode_v2(
        ("172.31.7.113", 47190),
        ("172.31.10.31", 443),
        tlvs=[(0xEA, b"\x01vpce-08d2bf15fac5001c9"), (0x04, bytes(36))],
        crc32c=True,
    ),
}


def main() -> None:
    print(f"proxyproto {proxyproto.__version__} ({proxyproto.IMPLEMENTATION} implementation)")
    for name, data in SAMPLES.items():
        header = proxyproto.parse(data + b"GET / HTTP/1.1\r\n")
        print(f"\n{name}: {len(data)} bytes")
        print(f"  version {header.version}, {header.command.name}, family {header.family.name}")
        print(f"  client {header.source}  ->  {header.destination}")
        if header.aws_vpce_id:
            print(f"  AWS VPC endpoint: {header.aws_vpce_id}")
        print(f"  application data starts at byte {header.length}")


if __name__ == "__main__":
    main()
