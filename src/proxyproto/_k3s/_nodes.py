"""Findings, and walking PyYAML's composed nodes (which keep their line marks)."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ._networks import (
    ConfigInputError,
    InputError,
    _flow_list,
    _is_everyone,
    _quote,
    parse_network,
)
from ._schema import _PLACEHOLDER, IMPORTANT_KEYS

# PyYAML's composed nodes (yaml.nodes.Node: .id, .tag, .value, .style, .start_mark); typed
# loosely so that this module type-checks and imports without PyYAML.
Node = Any
MappingNode = Any


@dataclass(frozen=True)
class Finding:
    """One lint result: a 1-based line, ``error`` or ``warning``, what, what to write."""

    line: int
    severity: str
    message: str
    fix: Optional[str] = None

    def format(self, filename: str) -> str:
        """``FILE:LINE: severity: message; write instead: fix`` on one line."""
        text = f"{filename}:{self.line}: {self.severity}: {self.message}"
        if self.fix:
            text += f"; write instead: {self.fix}"
        return text.replace("\n", " ")



def _yaml() -> Any:
    import yaml  # deferred: only the lint functions need PyYAML

    return yaml


class _NodeChecks:
    """Collects findings while walking composed YAML nodes (which keep their line marks).

    The node helpers and the network checks; :class:`._lint._Lint` adds the checks of
    the manifest and of the chart values.
    """

    def __init__(self, entrypoints: Sequence[str]) -> None:
        self.entrypoints = list(entrypoints)
        self.findings: list[Finding] = []

    def add(self, line: int, severity: str, message: str, fix: Optional[str] = None) -> None:
        self.findings.append(Finding(line, severity, message, fix))

    # ---- helpers over nodes
    @staticmethod
    def is_map(node: Optional[Node]) -> bool:
        return node is not None and node.id == "mapping"

    @staticmethod
    def is_seq(node: Optional[Node]) -> bool:
        return node is not None and node.id == "sequence"

    @staticmethod
    def is_scalar(node: Optional[Node]) -> bool:
        return node is not None and node.id == "scalar"

    @staticmethod
    def is_null(node: Optional[Node]) -> bool:
        return node is None or (node.id == "scalar" and node.tag.endswith(":null"))

    @staticmethod
    def is_true(node: Optional[Node]) -> bool:
        return (node is not None and node.id == "scalar" and node.tag.endswith(":bool")
                and str(node.value).lower() in ("true", "yes", "on", "y"))

    @staticmethod
    def items(node: MappingNode) -> Iterator[tuple[str, Node, Node]]:
        for key, value in node.value:
            if key.id == "scalar":
                yield str(key.value), key, value

    def get(self, node: Optional[Node], key: str) -> Optional[tuple[Node, Node]]:
        """The last ``key: value`` pair of a mapping (YAML loaders keep the last one)."""
        found = None
        if self.is_map(node):
            assert node is not None
            for name, knode, vnode in self.items(node):
                if name == key:
                    found = (knode, vnode)
        return found

    def get_ci(self, node: Optional[Node], key: str) -> Optional[tuple[Node, Node]]:
        """Like :meth:`get`, falling back to a wrongly-cased key (reported elsewhere)."""
        found = self.get(node, key)
        if found is None and self.is_map(node):
            assert node is not None
            for name, knode, vnode in self.items(node):
                if name.lower() == key.lower():
                    found = (knode, vnode)
        return found

    def duplicates(self, node: Node, line: Callable[[Node], int], seen: set[int]) -> None:
        """Report keys given twice in one mapping (only the last one counts)."""
        if id(node) in seen:
            return
        seen.add(id(node))
        if node.id == "mapping":
            first: dict[str, int] = {}
            for name, knode, vnode in self.items(node):
                if name in first and name != "<<":
                    self.add(line(knode), "error",
                             f"duplicate key {name!r} (first on line {first[name]}): only "
                             "this one counts", f"one {name!r} key with everything under it")
                else:
                    first[name] = line(knode)
                self.duplicates(vnode, line, seen)
        elif node.id == "sequence":
            for child in node.value:
                self.duplicates(child, line, seen)

    def keys(self, node: MappingNode, known: frozenset[str], where: str,
             line: Callable[[Node], int], closed: bool,
             skip: frozenset[str] | set[str] = frozenset()) -> None:
        """Unknown keys: wrong case and near misses (difflib), which Helm silently drops."""
        lowered = {name.lower(): name for name in known}
        for name, knode, _vnode in self.items(node):
            if name in known or name == "<<" or name in skip:
                continue
            suggestion = lowered.get(name.lower())
            wrong_case = suggestion is not None
            if suggestion is None:
                close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
                suggestion = close[0] if close else None
            if suggestion is not None:
                severity = ("error" if wrong_case or suggestion in IMPORTANT_KEYS or closed
                            else "warning")
                why = "keys are case-sensitive" if wrong_case else "unknown key"
                self.add(line(knode), severity,
                         f"{where}{name!r} is ignored ({why})", f"{where}{suggestion}")
            elif closed:
                self.add(line(knode), "error",
                         f"{where}{name!r} is not a known key, so it is ignored",
                         "one of " + ", ".join(sorted(known)))

    # ---- CIDR lists
    def cidrs(self, node: Node, where: str, line: Callable[[Node], int],
              severity_any: str = "error") -> list[str]:
        """Check a ``trustedIPs`` list; return its valid entries."""
        good: list[str] = []
        if self.is_scalar(node) and not self.is_null(node):
            parts = [p.strip() for p in str(node.value).split(",") if p.strip()]
            self.add(line(node), "error", f"{where}must be a list, not a string",
                     f"trustedIPs: {_flow_list(parts)}")
            return good
        if not self.is_seq(node):
            self.add(line(node), "error", f"{where}empty: no peer is trusted",
                     f"trustedIPs: [{_quote(_PLACEHOLDER)}]")
            return good
        if not node.value:
            self.add(line(node), "error", f"{where}empty: no peer is trusted",
                     f"trustedIPs: [{_quote(_PLACEHOLDER)}]")
        for item in node.value:
            if not self.is_scalar(item):
                self.add(line(item), "error", f"{where}entries must be strings")
                continue
            text = str(item.value)
            good_item = self.one_cidr(text, where, line(item), severity_any)
            if good_item is not None:
                good.append(good_item)
        return good

    def one_cidr(self, text: str, where: str, line: int, severity_any: str = "error"
                 ) -> Optional[str]:
        try:
            network = parse_network(text)
        except ConfigInputError as exc:
            fixed = None
            if "host bits" in str(exc):
                fixed = _quote(str(ipaddress.ip_network(text, strict=False)))
            self.add(line, "error", f"{where}{exc}", fixed)
            return None
        if _is_everyone(network):
            self.add(line, severity_any,
                     f"{where}{text!r} trusts every address: any client can forge its address",
                     "the load balancer's own networks")
            return None
        return str(network)


def _shown(value: str) -> str:
    return repr(value) if value else "missing"


def _line_of(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _compose_all(text: str) -> list[Node]:
    yaml = _yaml()
    try:
        return [doc for doc in yaml.compose_all(text, Loader=yaml.SafeLoader)
                if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError((mark.line + 1) if mark is not None else 1,
                         f"YAML syntax error: {problem}") from None
