"""Traefik on k3s: write and lint the configuration that lets clients' addresses through.

Pure logic for ``proxyproto k3s-config``: the command line hands in the option values or the
text of a file and prints what comes back. Three things are produced:

* the ``HelmChartConfig`` for ``/var/lib/rancher/k3s/server/manifests/traefik-config.yaml``
  (``service.spec.externalTrafficPolicy: Local`` and ``ports.<entry
  point>.proxyProtocol.trustedIPs``), written as text, without PyYAML;
* optionally the app side: an ``IngressRouteTCP`` whose service gets PROXY v2 from Traefik,
  and a ``Deployment`` + ``Service`` running ``proxyproto whoami``;
* findings on an existing ``HelmChartConfig`` or on ``helm get values traefik`` output, each
  with its line number and what to write instead. Reading YAML needs PyYAML (the ``k3s``
  extra); it is imported only when a lint function runs.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

# PyYAML's composed nodes (yaml.nodes.Node: .id, .tag, .value, .style, .start_mark); typed
# loosely so that this module type-checks and imports without PyYAML.
Node = Any
MappingNode = Any

__all__ = [
    "DEFAULT_ENTRYPOINTS",
    "K3S_CLUSTER_CIDR",
    "TRAEFIK_CONFIG_PATH",
    "ConfigInputError",
    "Finding",
    "InputError",
    "app_manifests",
    "helm_chart_config",
    "lint_manifest",
    "lint_values",
    "parse_network",
    "trusted_networks",
    "values_content",
]

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


# --------------------------------------------------------------------------- generation

_ENTRYPOINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
_DNS_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SNI = re.compile(r"\*|[A-Za-z0-9*]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _check_entrypoints(entrypoints: Sequence[str]) -> list[str]:
    result: list[str] = []
    for name in entrypoints:
        if not _ENTRYPOINT.fullmatch(name):
            raise ConfigInputError(f"{name!r} is not an entry point name (letters, digits, "
                                   "'-' and '_')")
        if name not in result:
            result.append(name)
    return result


def _quote(text: str) -> str:
    """A double-quoted YAML scalar; callers pass validated, printable ASCII only."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _flow_list(items: Sequence[str]) -> str:
    return "[" + ", ".join(_quote(item) for item in items) + "]"


def values_content(trusted: Sequence[str], entrypoints: Sequence[str] = DEFAULT_ENTRYPOINTS
                   ) -> str:
    """The Traefik chart values (YAML text) that ``valuesContent`` carries.

    With no entry points (nothing in front of the nodes sends PROXY headers) only the
    ``service`` part is written, and ``trusted`` must be empty.
    """
    names = _check_entrypoints(entrypoints)
    if not names and trusted:
        raise ConfigInputError("trusted networks need an entry point to apply to")
    networks = trusted_networks(trusted) if names else []
    lines = [
        "service:",
        "  spec:",
        "    # keep the client's address through kube-proxy / ServiceLB",
        "    externalTrafficPolicy: Local",
    ]
    if names:
        lines.append("ports:")
    for name in names:
        lines += [
            f"  {name}:",
            "    proxyProtocol:",
            "      # only these peers may send PROXY headers to Traefik",
            f"      trustedIPs: {_flow_list(networks)}",
        ]
    return "\n".join(lines) + "\n"


def helm_chart_config(trusted: Sequence[str],
                      entrypoints: Sequence[str] = DEFAULT_ENTRYPOINTS) -> str:
    """The whole ``HelmChartConfig`` document for ``TRAEFIK_CONFIG_PATH``."""
    body = values_content(trusted, entrypoints)
    indented = "".join("    " + line + "\n" for line in body.splitlines())
    return (
        f"# {TRAEFIK_CONFIG_PATH}\n"
        "# generated by `proxyproto k3s-config`; check it with `proxyproto k3s-config --check`\n"
        "apiVersion: helm.cattle.io/v1\n"
        "kind: HelmChartConfig\n"
        "metadata:\n"
        "  name: traefik\n"
        "  namespace: kube-system\n"
        "spec:\n"
        "  valuesContent: |-\n"
        f"{indented}"
    )


def _whoami_script(port: int) -> str:
    # PROXYPROTO_TRUSTED is comma-separated; each item becomes one --trusted option.
    return (
        "pip install --no-cache-dir --quiet proxyproto && "
        "set -f && IFS=, && set -- && "
        'for cidr in $PROXYPROTO_TRUSTED; do set -- "$@" --trusted "$cidr"; done && '
        f'exec proxyproto whoami --listen 0.0.0.0:{port} "$@"'
    )


def app_manifests(*, port: int, name: str = "whoami", namespace: str = "default",
                  app_trusted: Sequence[str] = (K3S_CLUSTER_CIDR,),
                  traefik_api: str = "v3", entrypoint: str = "websecure",
                  sni: str = "*") -> str:
    """``IngressRouteTCP`` + ``Service`` + ``Deployment`` for ``proxyproto whoami``.

    Traefik sends a PROXY v2 header on every connection to the service
    (``services[].proxyProtocol.version: 2``); the pod trusts ``app_trusted`` (Traefik's pod
    addresses: by default k3s' whole cluster CIDR, see the guide for narrowing it).
    """
    if not 1 <= port <= 65535:
        raise ConfigInputError(f"--app-port {port}: a port is 1 to 65535")
    for label, value in (("--app-name", name), ("--namespace", namespace)):
        if not _DNS_LABEL.fullmatch(value):
            raise ConfigInputError(f"{label} {value!r}: use lower-case letters, digits and "
                                   "'-' (a Kubernetes name)")
    if traefik_api not in ("v2", "v3"):
        raise ConfigInputError(f"--traefik-api {traefik_api!r}: choose v2 or v3")
    if not _SNI.fullmatch(sni):
        raise ConfigInputError(f"--app-sni {sni!r} is not a host name (or *)")
    (entry,) = _check_entrypoints([entrypoint])
    trusted = ",".join(trusted_networks(app_trusted))
    group = "traefik.io" if traefik_api == "v3" else "traefik.containo.us"
    labels = f"app.kubernetes.io/name: {name}"
    route = [
        f"apiVersion: {group}/v1alpha1",
        "kind: IngressRouteTCP",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "spec:",
        f"  entryPoints: [{entry}]",
        "  routes:",
        f"    - match: HostSNI(`{sni}`)",
        "      services:",
        f"        - name: {name}",
        f"          port: {port}",
        "          proxyProtocol:",
        "            version: 2",
    ]
    if traefik_api == "v3":
        route.insert(-2, "          # newer v3 CRDs prefer a ServersTransportTCP with "
                         "spec.proxyProtocol (see the guide)")
    if sni != "*":
        route += ["  tls:", "    passthrough: true"]
    service = [
        "apiVersion: v1",
        "kind: Service",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "spec:",
        "  selector:",
        f"    {labels}",
        "  ports:",
        "    - name: proxy",
        f"      port: {port}",
        "      targetPort: proxy",
        "      protocol: TCP",
    ]
    deployment = [
        "apiVersion: apps/v1",
        "kind: Deployment",
        "metadata:",
        f"  name: {name}",
        f"  namespace: {namespace}",
        "spec:",
        "  replicas: 1",
        "  selector:",
        "    matchLabels:",
        f"      {labels}",
        "  template:",
        "    metadata:",
        "      labels:",
        f"        {labels}",
        "    spec:",
        "      containers:",
        "        - name: whoami",
        "          image: python:3.12-slim",
        f"          command: [\"sh\", \"-c\", {_quote(_whoami_script(port))}]",
        "          env:",
        "            - name: PROXYPROTO_TRUSTED  # Traefik's pod addresses, comma-separated",
        f"              value: {_quote(trusted)}",
        "          ports:",
        "            - name: proxy",
        f"              containerPort: {port}",
        "          # a tcpSocket probe sends no PROXY header: proxyproto refuses and counts it",
        "          readinessProbe:",
        "            tcpSocket:",
        "              port: proxy",
        "            initialDelaySeconds: 20",
        "            periodSeconds: 10",
    ]
    return "\n".join(["\n".join(route), "---", "\n".join(service), "---",
                      "\n".join(deployment)]) + "\n"


# --------------------------------------------------------------------------- findings


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


# The keys each level of the Traefik chart's values.yaml knows (current chart, plus keys of
# older charts and of k3s' packaged chart that Helm still passes on).
TOP_KEYS = frozenset({
    "image", "commonLabels", "deployment", "podDisruptionBudget", "ingressClass", "core",
    "experimental", "gateway", "gatewayClass", "api", "ingressRoute", "updateStrategy",
    "readinessProbe", "livenessProbe", "startupProbe", "providers", "volumes",
    "additionalVolumeMounts", "logs", "metrics", "ocsp", "tracing", "global",
    "additionalArguments", "env", "envFrom", "ports", "tlsOptions", "tlsStore", "service",
    "autoscaling", "persistence", "certificatesResolvers", "hostNetwork", "rbac",
    "podSecurityPolicy", "serviceAccount", "serviceAccountAnnotations", "resources", "affinity",
    "nodeSelector", "tolerations", "topologySpreadConstraints", "priorityClassName",
    "securityContext", "podSecurityContext", "extraObjects", "namespaceOverride",
    "instanceLabelOverride", "versionOverride", "hub", "oci_meta", "globalArguments",
    "podAnnotations", "pilot", "nameOverride", "fullnameOverride",
})
ENTRYPOINT_KEYS = frozenset({
    "asDefault", "port", "hostPort", "containerPort", "hostIP", "expose", "exposedPort",
    "targetPort", "protocol", "nodePort", "redirections", "redirectTo", "forwardedHeaders",
    "proxyProtocol", "transport", "observability", "appProtocol", "allowACMEByPass", "http",
    "http2", "http3", "tls", "middlewares",
})
PROXY_PROTOCOL_KEYS = frozenset({"trustedIPs", "insecure"})
SERVICE_KEYS = frozenset({
    "enabled", "single", "type", "annotations", "annotationsTCP", "annotationsUDP", "labels",
    "spec", "loadBalancerSourceRanges", "externalIPs", "ipFamilyPolicy", "ipFamilies",
    "additionalServices", "loadBalancerClass", "internal",
})
SERVICE_SPEC_KEYS = frozenset({
    "externalTrafficPolicy", "internalTrafficPolicy", "loadBalancerIP", "loadBalancerClass",
    "clusterIP", "clusterIPs", "ipFamilyPolicy", "ipFamilies", "sessionAffinity",
    "sessionAffinityConfig", "healthCheckNodePort", "allocateLoadBalancerNodePorts",
    "publishNotReadyAddresses", "externalName", "trafficDistribution", "loadBalancerSourceRanges",
    "externalIPs",
})
HELMCHARTCONFIG_SPEC_KEYS = frozenset({"valuesContent", "values", "valuesSecrets",
                                       "failurePolicy", "serverSide"})
# A misspelling of one of these loses what this tool is about: an error, not a warning.
IMPORTANT_KEYS = frozenset({"ports", "service", "spec", "proxyProtocol", "trustedIPs",
                            "insecure", "externalTrafficPolicy", "valuesContent", "values",
                            "additionalArguments", "metadata", "name", "namespace", "kind",
                            "apiVersion"})

_OLD_FLAG = re.compile(r"--entry[Pp]oints\.([^.=\s]+)\.proxy[Pp]rotocol\.([A-Za-z]+)(?:=(.*))?",
                       re.IGNORECASE)
_HELM_HEADERS = ("USER-SUPPLIED VALUES", "COMPUTED VALUES")
_HELM_TITLE = re.compile(r"\A(?:USER-SUPPLIED|COMPUTED) VALUES:[ \t]*(?=\r?\n|\Z)")
_PLACEHOLDER = "<the load balancer's CIDRs>"


def _yaml() -> Any:
    import yaml  # deferred: only the lint functions need PyYAML

    return yaml


class _Lint:
    """Collects findings while walking composed YAML nodes (which keep their line marks)."""

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


def _shown(value: str) -> str:
    return repr(value) if value else "missing"


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
