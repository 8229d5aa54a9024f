"""The peers' versions: the expectations in this package were recorded against these.

A different major.minor version of a peer may legitimately behave differently (nginx
1.23.2 added TLV variables and later releases a larger header buffer; HAProxy releases
since May 2024 parse LOCAL TLVs): this test says so plainly, rather than leaving a
puzzling failure elsewhere.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.interop

#: What ``docs/interop.rst`` lists as verified (Debian 12 packages).
VERIFIED = {"haproxy": "2.6", "nginx": "1.22", "curl": "7.88"}


def test_peers_are_the_verified_versions(peer_versions: dict[str, str],
                                         record_property: pytest.RecordProperty) -> None:
    for name, line in peer_versions.items():
        record_property(name, line)
    for name, verified in VERIFIED.items():
        found = re.search(r"(\d+\.\d+)\.\d+", peer_versions[name])
        assert found, f"cannot read {name}'s version from {peer_versions[name]!r}"
        assert found[1] == verified, (
            f"{name} {found[0]} is not the verified {verified}.x: check the expectations "
            f"in tests/interop and the table in docs/interop.rst, then update both")
