"""The networks a Traefik entry point may trust: parsed strictly, as the chart needs them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from typing import Optional, Union

TRAEFIK_CONFIG_PATH = "/var/lib/rancher/k3s/server/manifests/traefik-config.yaml"
DEFAULT_ENTRYPOINTS: tuple[str, ...] = ("web", "websecure")
K3S_CLUSTER_CIDR = "10.42.0.0/16"  # k3s' default pod (cluster) CIDR

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class ConfigInputError(ValueError):
    """A bad option value (CIDR, port, name): the message is one line for the user."""


class InputError(Exception):
    """The input cannot be read as YAML at all (syntax error): ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


# --------------------------------------------------------------------------- networks

_PREFIX = re.compile(r"0|[1-9][0-9]{0,2}")


def parse_network(text: str) -> Network:
    """``ADDRESS/PREFIX`` (or a bare address) -> network, as strictly as Traefik reads it.

    Raises :class:`ConfigInputError` naming the problem: bad syntax, a netmask instead of a
    prefix length, a zone id, or host bits set (with the network that was probably meant).
    """
    if not isinstance(text, str) or not text or text != text.strip():
        raise ConfigInputError(f"{text!r} is not an IP network (write ADDRESS/PREFIX, "
                               "e.g. 10.0.0.0/8)")
    if "%" in text:
        raise ConfigInputError(f"{text!r}: zone ids are not allowed in a trusted network")
    _address, slash, prefix = text.partition("/")
    if slash and not _PREFIX.fullmatch(prefix):
        raise ConfigInputError(f"{text!r}: the prefix must be a length such as /8, "
                               "not a netmask")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigInputError(f"{text!r} is not an IP network (write ADDRESS/PREFIX, "
                               "e.g. 10.0.0.0/8)") from None
    raise ConfigInputError(f"{text!r} has host bits set: did you mean {network}?")


def _is_everyone(network: Network) -> bool:
    return network.prefixlen == 0


def trusted_networks(texts: Iterable[str]) -> list[str]:
    """Validate ``--trusted`` values; return them in canonical form, duplicates dropped.

    ``0.0.0.0/0`` and ``::/0`` are refused: trusting every address lets any client forge
    its address, which is what the PROXY protocol's trust list exists to prevent.
    """
    result: list[str] = []
    for text in texts:
        network = parse_network(text)
        if _is_everyone(network):
            raise ConfigInputError(
                f"{text!r} trusts every address, so any client could forge its address; "
                "list the load balancer's own networks instead")
        if str(network) not in result:
            result.append(str(network))
    if not result:
        raise ConfigInputError("give at least one --trusted network (the addresses of the "
                               "load balancer in front of Traefik)")
    return result



def _repaired(text: str) -> Optional[str]:
    """``text`` as a valid network (host bits cleared), or None when it cannot be one."""
    try:
        network = parse_network(text)
    except ConfigInputError:
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
    return None if _is_everyone(network) else str(network)


def _quote(text: str) -> str:
    """A double-quoted YAML scalar; callers pass validated, printable ASCII only."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow_list(items: Sequence[str]) -> str:
    """A YAML flow list of double-quoted scalars."""
    return "[" + ", ".join(_quote(item) for item in items) + "]"
