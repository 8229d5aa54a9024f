"""Linting a HelmChartConfig manifest or ``helm get values traefik`` output."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Callable

from ._generate import _check_entrypoints
from ._networks import DEFAULT_ENTRYPOINTS, _flow_list, _quote, _repaired
from ._nodes import Finding, Node, _compose_all, _line_of, _NodeChecks, _shown, _yaml
from ._schema import (
    _HELM_HEADERS,
    _HELM_TITLE,
    _OLD_FLAG,
    _PLACEHOLDER,
    ENTRYPOINT_KEYS,
    HELMCHARTCONFIG_SPEC_KEYS,
    PROXY_PROTOCOL_KEYS,
    SERVICE_KEYS,
    SERVICE_SPEC_KEYS,
    TOP_KEYS,
)


class _Lint(_NodeChecks):
    """The checks of a HelmChartConfig and of the chart values, on composed nodes."""

    # ---- the chart values
    def values(self, root: Node, line: Callable[[Node], int], anchor: int) -> None:
        """Lint one values mapping (``valuesContent``, ``spec.values`` or helm's output)."""
        if not self.is_map(root):
            self.add(line(root) if root is not None else anchor, "error",
                     "the chart values must be a mapping (key: value lines)")
            return
        self.duplicates(root, line, set())
        top_keys = [(n, k, v) for n, k, v in self.items(root)
                    if not (n in _HELM_HEADERS and self.is_null(v))]
        first_line = line(top_keys[0][1]) if top_keys else anchor
        known_here = {n for n, _, _ in top_keys}
        for name, knode, _vnode in top_keys:
            if name == "proxyProtocol":
                self.add(line(knode), "error",
                         "top-level proxyProtocol is the old stable/traefik chart's key; the "
                         "Traefik chart ignores it",
                         "ports.<entry point>.proxyProtocol.trustedIPs: [...]")
            elif name == "externalTrafficPolicy":
                self.add(line(knode), "error",
                         "top-level externalTrafficPolicy is ignored by the Traefik chart",
                         "service.spec.externalTrafficPolicy: Local")
            elif name.lower() == "entrypoints":
                self.add(line(knode), "error",
                         f"{name!r} is Traefik's static configuration, not a chart value: "
                         "Helm ignores it", "ports.<entry point>.proxyProtocol.trustedIPs")
        special = {n for n in known_here if n in ("proxyProtocol", "externalTrafficPolicy")
                   or n.lower() == "entrypoints"}
        self.keys(root, TOP_KEYS, "", line, closed=False,
                  skip=special | set(_HELM_HEADERS))
        old = self.old_arguments(root, line)
        self.ports(root, line, first_line, old)
        self.service(root, line, first_line)

    def old_arguments(self, root: Node, line: Callable[[Node], int]) -> set[str]:
        """``additionalArguments: --entryPoints.X.proxyProtocol...``: the old chart's form."""
        covered: set[str] = set()
        pair = self.get(root, "additionalArguments")
        if pair is None or not self.is_seq(pair[1]):
            return covered
        for item in pair[1].value:
            if not self.is_scalar(item):
                continue
            match = _OLD_FLAG.fullmatch(str(item.value).strip())
            if match is None:
                continue
            entry, option, value = match.group(1), match.group(2), match.group(3)
            where = f"additionalArguments --entryPoints.{entry}.proxyProtocol.{option}: "
            if option.lower() == "trustedips":
                covered.add(entry)
                cidrs = [c.strip() for c in (value or "").split(",") if c.strip()]
                for cidr in cidrs:
                    self.one_cidr(cidr, where, line(item))
                good = [r for r in (_repaired(c) for c in cidrs) if r is not None]
                ports_pair = self.get(root, "ports")
                entry_node = self.get(ports_pair[1], entry) if ports_pair else None
                proxy_node = self.get(entry_node[1], "proxyProtocol") if entry_node else None
                both = proxy_node is not None and self.get(proxy_node[1], "trustedIPs")
                self.add(line(item), "error" if both else "warning",
                         f"--entryPoints.{entry}.proxyProtocol.trustedIPs in additionalArguments "
                         "is the old chart's form: current charts write this flag themselves "
                         f"from ports.{entry}.proxyProtocol"
                         + (", which is set too, so Traefik gets two conflicting flags"
                            if both else ", where the chart can check and merge it"),
                         f"ports.{entry}.proxyProtocol.trustedIPs: {_flow_list(good or cidrs)}")
            elif option.lower() == "insecure":
                self.add(line(item), "error",
                         f"--entryPoints.{entry}.proxyProtocol.insecure trusts PROXY headers "
                         "from every peer: any client can forge its address",
                         f"ports.{entry}.proxyProtocol.trustedIPs: [{_quote(_PLACEHOLDER)}]")
            else:
                self.add(line(item), "warning",
                         f"{str(item.value).strip()!r} is the old chart's form",
                         f"ports.{entry}.proxyProtocol.{option}")
        return covered

    def ports(self, root: Node, line: Callable[[Node], int], first_line: int,
              old: set[str]) -> None:
        pair = self.get(root, "ports")
        ports_node = pair[1] if pair else None
        ports_line = line(pair[0]) if pair else first_line
        if pair is not None and not self.is_map(ports_node):
            self.add(line(pair[1]), "error", "ports must be a mapping of entry points")
            ports_node = None
        reference: list[str] = []
        entries: dict[str, tuple[Node, Node]] = {}
        if ports_node is not None:
            for name, knode, vnode in self.items(ports_node):
                entries[name] = (knode, vnode)
        for name, (_knode, vnode) in entries.items():
            if not self.is_map(vnode):
                continue
            where = f"ports.{name}."
            self.keys(vnode, ENTRYPOINT_KEYS, where, line, closed=False)
            for section in ("proxyProtocol", "forwardedHeaders"):
                spair = self.get_ci(vnode, section)
                if spair is None or self.is_null(spair[1]):
                    continue
                swhere = f"{where}{section}."
                if not self.is_map(spair[1]):
                    self.add(line(spair[1]), "error", f"{where}{section} must be a mapping",
                             f"{section}: {{trustedIPs: [...]}}")
                    continue
                self.keys(spair[1], PROXY_PROTOCOL_KEYS, swhere, line,
                          closed=True)
                ins = self.get_ci(spair[1], "insecure")
                if ins is not None and self.is_true(ins[1]):
                    what = ("PROXY headers" if section == "proxyProtocol"
                            else "X-Forwarded-* headers")
                    self.add(line(ins[0]), "error" if section == "proxyProtocol" else "warning",
                             f"{swhere}insecure: true trusts {what} from every peer: any "
                             "client can forge its address",
                             f"{swhere}trustedIPs: [...] and no insecure")
                tpair = self.get_ci(spair[1], "trustedIPs")
                if tpair is not None:
                    good = self.cidrs(tpair[1], f"{swhere}trustedIPs: ", line)
                    if section == "proxyProtocol" and good and not reference:
                        reference = good
        for entry in self.entrypoints:
            if entry in old:
                continue
            fix_cidrs = _flow_list(reference) if reference else f"[{_quote(_PLACEHOLDER)}]"
            fix = f"ports.{entry}.proxyProtocol.trustedIPs: {fix_cidrs}"
            if entry not in entries:
                near = [n for n in entries if n.lower() == entry.lower()]
                near = near or difflib.get_close_matches(entry, list(entries), n=1, cutoff=0.75)
                hint = f" (there is {near[0]!r}: names are case-sensitive)" if near else ""
                self.add(ports_line, "error",
                         f"entry point {entry!r} has no proxyProtocol.trustedIPs{hint}", fix)
                continue
            knode, vnode = entries[entry]
            ppair = self.get(vnode, "proxyProtocol")
            if ppair is None or not self.is_map(ppair[1]):
                self.add(line(knode), "error",
                         f"entry point {entry!r} has no proxyProtocol.trustedIPs", fix)
                continue
            if self.get(ppair[1], "trustedIPs") is None:
                self.add(line(ppair[0]), "error",
                         f"entry point {entry!r} has no proxyProtocol.trustedIPs", fix)

    def service(self, root: Node, line: Callable[[Node], int], first_line: int) -> None:
        fix = "service.spec.externalTrafficPolicy: Local"
        pair = self.get(root, "service")
        if pair is None or not self.is_map(pair[1]):
            self.add(line(pair[0]) if pair else first_line, "error",
                     "no service.spec.externalTrafficPolicy: with the default (Cluster) "
                     "kube-proxy/ServiceLB replace the client's address by a node's", fix)
            return
        self.keys(pair[1], SERVICE_KEYS, "service.", line, closed=False)
        etp = self.get(pair[1], "externalTrafficPolicy")
        if etp is not None:
            self.add(line(etp[0]), "error",
                     "service.externalTrafficPolicy is not a chart value (ignored)", fix)
        spec = self.get(pair[1], "spec")
        if spec is None or not self.is_map(spec[1]):
            if etp is None:
                self.add(line(spec[0]) if spec else line(pair[0]), "error",
                         "no service.spec.externalTrafficPolicy: with the default (Cluster) "
                         "kube-proxy/ServiceLB replace the client's address by a node's", fix)
            return
        self.keys(spec[1], SERVICE_SPEC_KEYS, "service.spec.", line,
                  closed=False)
        policy = self.get(spec[1], "externalTrafficPolicy")
        if policy is None:
            if etp is None:
                self.add(line(spec[0]), "error",
                         "no service.spec.externalTrafficPolicy: with the default (Cluster) "
                         "kube-proxy/ServiceLB replace the client's address by a node's", fix)
            return
        value = str(policy[1].value) if self.is_scalar(policy[1]) else ""
        if value == "Cluster":
            self.add(line(policy[1]), "error",
                     "externalTrafficPolicy: Cluster replaces the client's address by a node's",
                     "externalTrafficPolicy: Local")
        elif value != "Local":
            self.add(line(policy[1]), "error",
                     f"externalTrafficPolicy {value!r} is not Local or Cluster "
                     "(values are case-sensitive)", "externalTrafficPolicy: Local")

    # ---- manifests
    def document(self, root: Node) -> bool:
        """Lint one YAML document of a manifest file; return whether it was a candidate."""
        line = _line_of
        if not self.is_map(root):
            return False
        kind_pair = self.get(root, "kind")
        kind = str(kind_pair[1].value) if kind_pair and self.is_scalar(kind_pair[1]) else ""
        meta = self.get(root, "metadata")
        name_pair = self.get(meta[1], "name") if meta else None
        name = str(name_pair[1].value) if name_pair and self.is_scalar(name_pair[1]) else ""
        spec = self.get(root, "spec")
        if kind == "IngressRouteTCP":
            self.ingress_route_tcp(root)
            return False
        if kind == "HelmChart":
            if name == "traefik":
                self.add(line(kind_pair[1]) if kind_pair else 1, "warning",
                         "this is k3s' packaged HelmChart for Traefik, which k3s rewrites at "
                         "start-up: put your values in a HelmChartConfig",
                         "kind: HelmChartConfig")
            return False
        has_values = spec is not None and self.get(spec[1], "valuesContent") is not None
        looks_like = kind.lower().replace("-", "") in ("helmchartconfig", "helmchartconfigs") or (
            bool(kind) and difflib.SequenceMatcher(None, kind.lower(), "helmchartconfig").ratio()
            > 0.8)
        if kind != "HelmChartConfig" and not looks_like and not has_values:
            return False
        self.duplicates(root, line, set())
        self.keys(root, frozenset({"apiVersion", "kind", "metadata", "spec", "status"}), "",
                  line, closed=False)
        if kind != "HelmChartConfig":
            where = line(kind_pair[1]) if kind_pair else line(root)
            self.add(where, "error", f"kind {_shown(kind)}: k3s only merges a "
                     "HelmChartConfig into its packaged chart", "kind: HelmChartConfig")
        api = self.get(root, "apiVersion")
        api_value = str(api[1].value) if api and self.is_scalar(api[1]) else ""
        if api_value != "helm.cattle.io/v1":
            self.add(line(api[1]) if api else line(root), "error",
                     f"apiVersion {_shown(api_value)} is not the HelmChartConfig's",
                     "apiVersion: helm.cattle.io/v1")
        if name != "traefik":
            self.add(line(name_pair[1]) if name_pair else (line(meta[0]) if meta else line(root)),
                     "error", f"metadata.name {_shown(name)}: the HelmChartConfig must "
                     "be named like the packaged chart", "metadata.name: traefik")
        ns_pair = self.get(meta[1], "namespace") if meta else None
        namespace = str(ns_pair[1].value) if ns_pair and self.is_scalar(ns_pair[1]) else ""
        if namespace != "kube-system":
            self.add(line(ns_pair[1]) if ns_pair else (line(meta[0]) if meta else line(root)),
                     "error", f"metadata.namespace {_shown(namespace)}: k3s' Traefik "
                     "chart lives in kube-system", "metadata.namespace: kube-system")
        if spec is None or not self.is_map(spec[1]):
            self.add(line(spec[0]) if spec else line(root), "error",
                     "no spec.valuesContent: this HelmChartConfig changes nothing",
                     "spec.valuesContent: |- followed by the chart values")
            return True
        self.keys(spec[1], HELMCHARTCONFIG_SPEC_KEYS, "spec.", line,
                  closed=True)
        content = self.get(spec[1], "valuesContent")
        structured = self.get(spec[1], "values")
        if structured is not None and self.is_map(structured[1]) and content is None:
            # helm-controller: spec.values holds structured values (and wins over
            # valuesContent when both are given)
            self.values(structured[1], line, line(structured[0]))
            return True
        if content is None:
            self.add(line(spec[0]), "error",
                     "no spec.valuesContent: this HelmChartConfig changes nothing",
                     "spec.valuesContent: |- followed by the chart values")
            return True
        self.values_content(content[0], content[1])
        return True

    def values_content(self, key: Node, node: Node) -> None:
        yaml = _yaml()
        if not self.is_scalar(node) or self.is_null(node) or not str(node.value).strip():
            self.add(_line_of(key), "error", "spec.valuesContent is empty",
                     "valuesContent: |- followed by the chart values")
            return
        if node.style == "|":
            # a literal block keeps its lines: content line i is the file's line mark+1+i
            base = int(node.start_mark.line) + 1

            def inner_line(inner: Node) -> int:
                return base + int(inner.start_mark.line) + 1
        else:
            def inner_line(inner: Node) -> int:
                return _line_of(node)
        try:
            inner_root = yaml.compose(str(node.value), Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = (base + mark.line + 1) if (mark is not None and node.style == "|") \
                else _line_of(node)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            self.add(where, "error", f"valuesContent is not valid YAML: {problem}",
                     "the chart values as YAML under 'valuesContent: |-', indented")
            return
        if inner_root is None:
            self.add(_line_of(key), "error", "spec.valuesContent is empty",
                     "valuesContent: |- followed by the chart values")
            return
        self.values(inner_root, inner_line, _line_of(key))

    def ingress_route_tcp(self, root: Node) -> None:
        """A route whose service gets no PROXY header is worth a warning."""
        line = _line_of
        spec = self.get(root, "spec")
        routes = self.get(spec[1], "routes") if spec else None
        if routes is None or not self.is_seq(routes[1]):
            return
        for route in routes[1].value:
            services = self.get(route, "services")
            if services is None or not self.is_seq(services[1]):
                continue
            for service in services[1].value:
                if not self.is_map(service):
                    continue
                pp = self.get(service, "proxyProtocol")
                st = self.get(service, "serversTransport")
                sname = self.get(service, "name")
                label = str(sname[1].value) if sname and self.is_scalar(sname[1]) else "?"
                if pp is None:
                    if st is None:
                        self.add(line(service), "warning",
                                 f"IngressRouteTCP service {label!r} gets no PROXY header",
                                 "proxyProtocol: {version: 2} on the service")
                    continue
                version = self.get(pp[1], "version")
                value = str(version[1].value) if version and self.is_scalar(version[1]) else ""
                if value not in ("1", "2"):
                    self.add(line(version[1]) if version else line(pp[0]), "error",
                             f"IngressRouteTCP proxyProtocol.version {_shown(value)}: "
                             "only 1 and 2 exist",
                             "proxyProtocol: {version: 2}")



def _sorted(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: f.line)


def lint_manifest(text: str, entrypoints: Sequence[str] = DEFAULT_ENTRYPOINTS,
                  filename: str = "") -> list[Finding]:
    """Findings on a manifest file (one or more YAML documents) holding the HelmChartConfig.

    Raises :class:`InputError` when the text is not YAML at all.
    """
    lint = _Lint(_check_entrypoints(entrypoints))
    documents = _compose_all(text)
    candidates = 0
    for document in documents:
        if lint.document(document):
            candidates += 1
            if candidates == 2:
                lint.add(_line_of(document), "warning",
                         "a second HelmChartConfig in this file: when both are named traefik "
                         "in kube-system, the later one replaces the earlier")
    if candidates == 0:
        lint.add(1, "error", "no HelmChartConfig in this file",
                 "apiVersion: helm.cattle.io/v1, kind: HelmChartConfig, metadata: {name: "
                 "traefik, namespace: kube-system} (`proxyproto k3s-config --trusted CIDR`)")
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if base in ("traefik.yaml", "traefik.yml"):
        lint.add(1, "warning", f"{base} is the name of k3s' own Traefik manifest, which k3s "
                 "rewrites at start-up", "traefik-config.yaml")
    return _sorted(lint.findings)


def lint_values(text: str, entrypoints: Sequence[str] = DEFAULT_ENTRYPOINTS) -> list[Finding]:
    """Findings on chart values, e.g. ``helm -n kube-system get values traefik``'s output.

    Raises :class:`InputError` when the text is not YAML at all.
    """
    lint = _Lint(_check_entrypoints(entrypoints))
    # helm prints a title line before the YAML (and `null` when nothing was supplied): make
    # the title a comment, which keeps the line numbers
    text = _HELM_TITLE.sub(r"# \g<0>", text)
    documents = [d for d in _compose_all(text) if not lint.is_null(d)]
    if not documents:
        lint.add(1, "error", "no values at all: the chart runs with its defaults",
                 "proxyproto k3s-config --trusted CIDR, then the HelmChartConfig it prints")
        return lint.findings
    for document in documents:
        lint.values(document, _line_of, _line_of(document))
    return _sorted(lint.findings)
