"""``proxyproto k3s-config``: the HelmChartConfig it writes, and the findings of its linter."""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Optional

import pytest

yaml = pytest.importorskip("yaml")

from proxyproto import _k3s  # noqa: E402
from proxyproto._cli import _k3s as _cli_k3s  # noqa: E402
from proxyproto._cli._common import EXIT_FILE  # noqa: E402

# --------------------------------------------------------------------------- helpers

DRIVER = (
    "import argparse, sys\n"
    "from proxyproto._cli import _k3s as _cli_k3s\n"
    "parser = argparse.ArgumentParser(prog='proxyproto')\n"
    "_cli_k3s.register(parser.add_subparsers(dest='command'))\n"
    "args = parser.parse_args(sys.argv[1:])\n"
    "raise SystemExit(args.func(args))\n"
)
NO_YAML = "import sys; sys.modules['yaml'] = None\n"


def run_cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    """Parse ``argv`` with a parser built by ``register`` and call ``run`` in process."""
    parser = argparse.ArgumentParser(prog="proxyproto")
    _cli_k3s.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["k3s-config", *argv])
    out, err = io.StringIO(), io.StringIO()
    status = args.func(args, out=out, err=err, stdin=io.StringIO(stdin))
    return status, out.getvalue(), err.getvalue()


def subprocess_cli(*argv: str, stdin: str = "", prelude: str = ""
                   ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", prelude + DRIVER, "k3s-config", *argv],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          check=False)


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """The 1-based line of the ``occurrence``-th line containing ``needle``."""
    seen = 0
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return number
    raise AssertionError(f"{needle!r} not in the text")


def manifest(values: str, header: Optional[str] = None) -> str:
    """A HelmChartConfig whose valuesContent is ``values`` (dedented)."""
    head = header if header is not None else textwrap.dedent("""\
        apiVersion: helm.cattle.io/v1
        kind: HelmChartConfig
        metadata:
          name: traefik
          namespace: kube-system
        """)
    body = textwrap.indent(textwrap.dedent(values), "    ")
    return head + "spec:\n  valuesContent: |-\n" + body


GOOD_VALUES = textwrap.dedent("""\
    service:
      spec:
        externalTrafficPolicy: Local
    ports:
      web:
        proxyProtocol:
          trustedIPs: ["192.0.2.0/28"]
      websecure:
        proxyProtocol:
          trustedIPs:
            - 192.0.2.0/28
            - 2001:db8::/64
    """)


LOCAL_SERVICE = "service:\n  spec:\n    externalTrafficPolicy: Local\n"


def found(findings: list[_k3s.Finding]) -> list[tuple[int, str, str]]:
    return [(f.line, f.severity, f.message + " | " + (f.fix or "")) for f in findings]


def assert_finding(findings: list[_k3s.Finding], line: int, severity: str, *needles: str
                   ) -> _k3s.Finding:
    for finding in findings:
        text = finding.message + " | " + (finding.fix or "")
        if finding.line == line and finding.severity == severity and all(
                n in text for n in needles):
            return finding
    raise AssertionError(f"no {severity} on line {line} with {needles}: {found(findings)}")


def errors(findings: list[_k3s.Finding]) -> list[_k3s.Finding]:
    return [f for f in findings if f.severity == "error"]


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize(("text", "canonical"), [
    ("10.0.0.0/8", "10.0.0.0/8"),
    ("192.0.2.7", "192.0.2.7/32"),
    ("2001:db8::/32", "2001:db8::/32"),
    ("2001:DB8:0::/48", "2001:db8::/48"),
    ("::1", "::1/128"),
])
def test_parse_network_accepts(text: str, canonical: str) -> None:
    assert str(_k3s.parse_network(text)) == canonical


@pytest.mark.parametrize(("text", "words"), [
    ("10.0.0.1/8", "host bits set: did you mean 10.0.0.0/8?"),
    ("2001:db8::1/32", "did you mean 2001:db8::/32?"),
    ("10.0.0.0/255.0.0.0", "not a netmask"),
    ("10.0.0.0/08", "not a netmask"),
    ("10.0.0.0/33", "is not an IP network"),
    ("10.0.0", "is not an IP network"),
    ("010.0.0.0/8", "is not an IP network"),
    (" 10.0.0.0/8", "is not an IP network"),
    ("", "is not an IP network"),
    ("fe80::1%eth0/64", "zone ids"),
    ("example.com", "is not an IP network"),
])
def test_parse_network_refuses(text: str, words: str) -> None:
    with pytest.raises(_k3s.ConfigInputError) as info:
        _k3s.parse_network(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0"])
def test_trusted_networks_refuse_everyone(everyone: str) -> None:
    with pytest.raises(_k3s.ConfigInputError, match="trusts every address"):
        _k3s.trusted_networks(["10.0.0.0/8", everyone])


def test_trusted_networks_canonical_and_deduplicated() -> None:
    assert _k3s.trusted_networks(["192.0.2.1", "192.0.2.1/32", "2001:DB8::/32"]) == [
        "192.0.2.1/32", "2001:db8::/32"]
    with pytest.raises(_k3s.ConfigInputError, match="at least one"):
        _k3s.trusted_networks([])


# --------------------------------------------------------------------------- generation


def test_generated_config_structure() -> None:
    text = _k3s.helm_chart_config(["192.0.2.0/28", "2001:db8::/64"])
    (document,) = yaml.safe_load_all(text)
    assert document["apiVersion"] == "helm.cattle.io/v1"
    assert document["kind"] == "HelmChartConfig"
    assert document["metadata"] == {"name": "traefik", "namespace": "kube-system"}
    values = yaml.safe_load(document["spec"]["valuesContent"])
    assert values["service"]["spec"]["externalTrafficPolicy"] == "Local"
    assert set(values["ports"]) == {"web", "websecure"}
    for entry in ("web", "websecure"):
        assert values["ports"][entry]["proxyProtocol"] == {
            "trustedIPs": ["192.0.2.0/28", "2001:db8::/64"]}
    assert text.startswith(f"# {_k3s.TRAEFIK_CONFIG_PATH}\n")


def test_generated_config_entrypoints_and_canonical_cidrs() -> None:
    text = _k3s.helm_chart_config(["192.0.2.9", "192.0.2.9/32"], ["websecure", "mqtt"])
    values = yaml.safe_load(yaml.safe_load(text)["spec"]["valuesContent"])
    assert list(values["ports"]) == ["websecure", "mqtt"]
    assert values["ports"]["mqtt"]["proxyProtocol"]["trustedIPs"] == ["192.0.2.9/32"]


def test_service_only() -> None:
    status, out, err = run_cli("--service-only")
    assert (status, err) == (0, "")
    values = yaml.safe_load(yaml.safe_load(out)["spec"]["valuesContent"])
    assert values == {"service": {"spec": {"externalTrafficPolicy": "Local"}}}
    assert run_cli("--check", "-", "--service-only", stdin=out)[0] == 0
    assert run_cli("--check", "-", stdin=out)[0] == 1  # web and websecure lack trustedIPs
    for argv in (["--service-only", "--trusted", "10.0.0.0/8"],
                 ["--service-only", "--entrypoint", "web"]):
        status, out, err = run_cli(*argv)
        assert (status, out) == (2, "") and "--service-only" in err and err.count("\n") == 1
    with pytest.raises(_k3s.ConfigInputError, match="need an entry point"):
        _k3s.values_content(["10.0.0.0/8"], [])


@pytest.mark.parametrize("bad", ["web secure", "", "we:b", "-web"])
def test_generated_config_refuses_bad_entrypoint(bad: str) -> None:
    with pytest.raises(_k3s.ConfigInputError, match="entry point"):
        _k3s.helm_chart_config(["10.0.0.0/8"], [bad])


@pytest.mark.parametrize("api", ["v2", "v3"])
def test_app_manifests(api: str) -> None:
    text = _k3s.app_manifests(port=8000, name="echo", namespace="apps", traefik_api=api,
                              app_trusted=["10.42.0.0/16", "10.43.0.0/16"])
    route, service, deployment = yaml.safe_load_all(text)
    group = "traefik.io" if api == "v3" else "traefik.containo.us"
    assert route["apiVersion"] == f"{group}/v1alpha1"
    assert route["kind"] == "IngressRouteTCP"
    assert route["metadata"] == {"name": "echo", "namespace": "apps"}
    assert route["spec"]["entryPoints"] == ["websecure"]
    (rule,) = route["spec"]["routes"]
    assert rule["match"] == "HostSNI(`*`)"
    assert rule["services"] == [{"name": "echo", "port": 8000,
                                 "proxyProtocol": {"version": 2}}]
    assert "tls" not in route["spec"]
    assert service["kind"] == "Service"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "echo"}
    assert service["spec"]["ports"] == [{"name": "proxy", "port": 8000,
                                         "targetPort": "proxy", "protocol": "TCP"}]
    assert deployment["kind"] == "Deployment"
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"] == deployment["spec"]["selector"]["matchLabels"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "python:3.12-slim"
    assert container["env"] == [{"name": "PROXYPROTO_TRUSTED",
                                 "value": "10.42.0.0/16,10.43.0.0/16"}]
    assert container["readinessProbe"]["tcpSocket"] == {"port": "proxy"}
    assert container["ports"] == [{"name": "proxy", "containerPort": 8000}]
    command = container["command"]
    assert command[:2] == ["sh", "-c"]
    assert "pip install" in command[2] and "proxyproto whoami --listen 0.0.0.0:8000" in command[2]


def test_app_manifest_command_expands_the_trusted_list() -> None:
    """The container's shell turns PROXYPROTO_TRUSTED into one --trusted per network."""
    text = _k3s.app_manifests(port=8000)
    script = list(yaml.safe_load_all(text))[2]["spec"]["template"]["spec"]["containers"][0][
        "command"][2]
    probe = script.replace("pip install --no-cache-dir --quiet proxyproto && ", "").replace(
        "exec proxyproto whoami", "printf '%s\\n' proxyproto whoami")
    result = subprocess.run(["sh", "-c", probe], capture_output=True, text=True, timeout=30,
                            env={"PROXYPROTO_TRUSTED": "10.42.0.0/16,fd00::/8", "PATH": "/bin:"
                                 "/usr/bin"}, check=True)
    assert result.stdout.split("\n")[:-1] == [
        "proxyproto", "whoami", "--listen", "0.0.0.0:8000",
        "--trusted", "10.42.0.0/16", "--trusted", "fd00::/8"]


def test_app_manifests_sni_uses_passthrough() -> None:
    route = next(yaml.safe_load_all(_k3s.app_manifests(port=8443, sni="app.example.com")))
    assert route["spec"]["routes"][0]["match"] == "HostSNI(`app.example.com`)"
    assert route["spec"]["tls"] == {"passthrough": True}


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"port": 0}, "1 to 65535"),
    ({"port": 70000}, "1 to 65535"),
    ({"port": 80, "name": "Who_Am_I"}, "Kubernetes name"),
    ({"port": 80, "namespace": "a.b"}, "Kubernetes name"),
    ({"port": 80, "traefik_api": "v1"}, "v2 or v3"),
    ({"port": 80, "sni": "a b"}, "not a host name"),
    ({"port": 80, "app_trusted": ["10.42.0.1/16"]}, "host bits"),
    ({"port": 80, "app_trusted": ["::/0"]}, "every address"),
])
def test_app_manifests_refuse(kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(_k3s.ConfigInputError) as info:
        _k3s.app_manifests(**kwargs)
    assert words in str(info.value)


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("app", [None, "v2", "v3"])
def test_generated_output_lints_clean(app: Optional[str]) -> None:
    argv = ["--trusted", "192.0.2.0/28", "--trusted", "2001:db8::/64"]
    if app:
        argv += ["--app-port", "9000", "--traefik-api", app]
    status, out, err = run_cli(*argv)
    assert (status, err) == (0, "")
    assert _k3s.lint_manifest(out) == []
    values = yaml.safe_load(next(yaml.safe_load_all(out))["spec"]["valuesContent"])
    assert _k3s.lint_values(yaml.safe_dump(values)) == []


def test_generated_output_with_other_entrypoints_lints_clean_for_them() -> None:
    _status, out, _err = run_cli("--trusted", "10.0.0.0/8", "--entrypoint", "mqtt")
    assert _k3s.lint_manifest(out, ["mqtt"]) == []
    missing = _k3s.lint_manifest(out)  # web and websecure are not configured
    assert {f.message for f in missing} == {
        "entry point 'web' has no proxyProtocol.trustedIPs",
        "entry point 'websecure' has no proxyProtocol.trustedIPs"}
    assert all(f.fix == 'ports.web.proxyProtocol.trustedIPs: ["10.0.0.0/8"]'
               for f in missing if "'web'" in f.message)


# --------------------------------------------------------------------------- findings: the manifest


def test_wrong_kind_name_namespace_api_version() -> None:
    text = manifest(GOOD_VALUES, header=textwrap.dedent("""\
        apiVersion: k3s.cattle.io/v1
        kind: HelmChartConfigs
        metadata:
          name: traefik-config
          namespace: default
        """))
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, 1, "error", "apiVersion 'k3s.cattle.io/v1'",
                   "apiVersion: helm.cattle.io/v1")
    assert_finding(findings, 2, "error", "kind 'HelmChartConfigs'", "kind: HelmChartConfig")
    assert_finding(findings, 4, "error", "metadata.name 'traefik-config'",
                   "metadata.name: traefik")
    assert_finding(findings, 5, "error", "metadata.namespace 'default'",
                   "metadata.namespace: kube-system")
    assert len(findings) == 4


def test_missing_namespace_is_an_error() -> None:
    text = manifest(GOOD_VALUES, header="apiVersion: helm.cattle.io/v1\n"
                    "kind: HelmChartConfig\nmetadata:\n  name: traefik\n")
    (finding,) = _k3s.lint_manifest(text)
    assert (finding.line, finding.severity) == (3, "error")
    assert "metadata.namespace missing" in finding.message


def test_lowercase_kind_with_values_content_is_a_candidate() -> None:
    text = manifest(GOOD_VALUES).replace("kind: HelmChartConfig", "kind: helmchartconfig")
    (finding,) = _k3s.lint_manifest(text)
    assert (finding.line, finding.severity, finding.fix) == (2, "error",
                                                            "kind: HelmChartConfig")


def test_no_helm_chart_config_in_file() -> None:
    findings = _k3s.lint_manifest("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n")
    assert_finding(findings, 1, "error", "no HelmChartConfig")
    assert errors(_k3s.lint_manifest("")) != []


def test_packaged_helm_chart_gets_a_warning() -> None:
    text = ("apiVersion: helm.cattle.io/v1\nkind: HelmChart\nmetadata:\n  name: traefik\n"
            "  namespace: kube-system\n---\n" + manifest(GOOD_VALUES))
    findings = _k3s.lint_manifest(text)
    assert found(findings) == [(2, "warning", found(findings)[0][2])]
    assert "k3s rewrites" in findings[0].message


def test_file_named_traefik_yaml_gets_a_warning() -> None:
    findings = _k3s.lint_manifest(manifest(GOOD_VALUES),
                                  filename="/var/lib/rancher/k3s/server/manifests/traefik.yaml")
    (finding,) = findings
    assert (finding.line, finding.severity, finding.fix) == (1, "warning",
                                                            "traefik-config.yaml")


def test_second_helm_chart_config_warns_and_lines_count_across_documents() -> None:
    first = manifest(GOOD_VALUES)
    second = manifest(GOOD_VALUES.replace("192.0.2.0/28\"]", "192.0.2.1/28\"]"))
    text = first + "---\n" + second
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "apiVersion", 2), "warning", "second HelmChartConfig")
    host_bits = assert_finding(findings, line_of(text, "192.0.2.1/28"), "error", "host bits",
                               "did you mean 192.0.2.0/28?")
    assert host_bits.fix == '"192.0.2.0/28"'
    assert len(findings) == 2


def test_duplicate_key() -> None:
    text = manifest(GOOD_VALUES + "service:\n  type: NodePort\n")
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "service:", 2), "error", "duplicate key 'service'",
                   f"first on line {line_of(text, 'service:')}")


def test_spec_keys_are_closed() -> None:
    text = manifest(GOOD_VALUES).replace("valuesContent: |-", "valueContent: |-")
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "valueContent"), "error", "'valueContent' is ignored",
                   "spec.valuesContent")
    assert_finding(findings, line_of(text, "spec:"), "error", "no spec.valuesContent")


def test_empty_values_content() -> None:
    text = manifest("").rstrip() + ' ""\n'
    text = text.replace('|- ""', '""')
    findings = _k3s.lint_manifest(text)
    assert found(findings) == [(line_of(text, "valuesContent"), "error",
                                found(findings)[0][2])]
    assert "empty" in findings[0].message


def test_values_content_not_yaml_points_into_the_block() -> None:
    text = manifest(LOCAL_SERVICE + "ports:\n  web: [unclosed\n  websecure: {}\n")
    findings = _k3s.lint_manifest(text)
    (finding,) = findings
    assert finding.severity == "error"
    assert finding.message.startswith("valuesContent is not valid YAML")
    # PyYAML notices the problem at the next key, one line below the unclosed list
    assert finding.line == line_of(text, "websecure: {}")


def test_values_content_in_quoted_style_reports_its_own_line() -> None:
    text = ("apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata:\n  name: traefik\n"
            "  namespace: kube-system\nspec:\n"
            '  valuesContent: "service: {spec: {externalTrafficPolicy: Cluster}}"\n')
    findings = _k3s.lint_manifest(text)
    assert {f.line for f in findings} == {7}
    assert_finding(findings, 7, "error", "externalTrafficPolicy: Cluster")
    assert_finding(findings, 7, "error", "entry point 'web'")


def test_structured_spec_values() -> None:
    text = ("apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata:\n  name: traefik\n"
            "  namespace: kube-system\nspec:\n  values:\n" +
            textwrap.indent(textwrap.dedent(GOOD_VALUES), "    ").replace(
                "192.0.2.0/28\"]", "0.0.0.0/0\"]"))
    findings = _k3s.lint_manifest(text)
    (finding,) = findings
    assert finding.line == line_of(text, "0.0.0.0/0")
    assert "trusts every address" in finding.message


# --------------------------------------------------------------------------- findings: the values


def test_entry_point_without_trusted_ips() -> None:
    text = manifest(LOCAL_SERVICE + textwrap.dedent("""\
        ports:
          web:
            port: 8000
          websecure:
            proxyProtocol:
              insecure: false
        """))
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "web:"), "error", "entry point 'web' has no",
                   "ports.web.proxyProtocol.trustedIPs: [\"<the load balancer's CIDRs>\"]")
    assert_finding(findings, line_of(text, "proxyProtocol:"), "error",
                   "entry point 'websecure' has no")
    assert len(findings) == 2


def test_entry_point_missing_names_a_wrongly_cased_one() -> None:
    text = manifest(GOOD_VALUES.replace("  web:", "  Web:"))
    findings = _k3s.lint_manifest(text)
    finding = assert_finding(findings, line_of(text, "ports:"), "error", "'web' has no",
                             "there is 'Web'")
    # the fix reuses the first entry point's trusted networks
    assert finding.fix == 'ports.web.proxyProtocol.trustedIPs: ["192.0.2.0/28"]'


@pytest.mark.parametrize(("cidr", "words"), [
    ("10.0.0.1/8", "host bits set"),
    ("10.0.0.0/255.0.0.0", "not a netmask"),
    ("10.0.0.300/32", "is not an IP network"),
    ("0.0.0.0/0", "trusts every address"),
    ("::/0", "trusts every address"),
])
def test_bad_trusted_ips(cidr: str, words: str) -> None:
    text = manifest(GOOD_VALUES.replace("- 2001:db8::/64", f'- "{cidr}"'))
    findings = _k3s.lint_manifest(text)
    (finding,) = findings
    assert (finding.line, finding.severity) == (line_of(text, cidr), "error")
    assert finding.message.startswith("ports.websecure.proxyProtocol.trustedIPs: ")
    assert words in finding.message


def test_trusted_ips_as_a_string_and_empty() -> None:
    text = manifest(GOOD_VALUES.replace('trustedIPs: ["192.0.2.0/28"]',
                                        'trustedIPs: "192.0.2.0/28, 198.51.100.0/24"')
                    .replace("trustedIPs:\n        - 192.0.2.0/28\n        - 2001:db8::/64\n",
                             "trustedIPs: []\n"))
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, '"192.0.2.0/28, '), "error", "must be a list",
                   'trustedIPs: ["192.0.2.0/28", "198.51.100.0/24"]')
    assert_finding(findings, line_of(text, "trustedIPs: []"), "error", "empty: no peer")


def test_insecure_true() -> None:
    text = manifest(GOOD_VALUES.replace('trustedIPs: ["192.0.2.0/28"]',
                                        'trustedIPs: ["192.0.2.0/28"]\n      insecure: true'))
    (finding,) = _k3s.lint_manifest(text)
    assert (finding.line, finding.severity) == (line_of(text, "insecure: true"), "error")
    assert "ports.web.proxyProtocol.insecure: true" in finding.message


def test_forwarded_headers_insecure_is_only_a_warning() -> None:
    text = manifest(GOOD_VALUES + "  metrics:\n    forwardedHeaders:\n      insecure: yes\n")
    (finding,) = _k3s.lint_manifest(text)
    assert (finding.line, finding.severity) == (line_of(text, "insecure: yes"), "warning")
    status, out, _err = run_cli("--check", "-", stdin=text)
    assert status == 0 and out.startswith("<stdin>:")


@pytest.mark.parametrize(("service", "needle", "words"), [
    ("service:\n  type: LoadBalancer\n", "service:", "no service.spec.externalTrafficPolicy"),
    ("service:\n  spec:\n    externalTrafficPolicy: Cluster\n", "Cluster",
     "externalTrafficPolicy: Cluster replaces"),
    ("service:\n  spec:\n    externalTrafficPolicy: local\n", "local", "case-sensitive"),
    ("service:\n  spec:\n    loadBalancerIP: 192.0.2.1\n", "    spec:",
     "no service.spec.externalTrafficPolicy"),
    ("service:\n  externalTrafficPolicy: Local\n", "externalTrafficPolicy",
     "service.externalTrafficPolicy is not a chart value"),
    ("externalTrafficPolicy: Local\n", "externalTrafficPolicy",
     "top-level externalTrafficPolicy"),
])
def test_external_traffic_policy(service: str, needle: str, words: str) -> None:
    pieces = textwrap.dedent(GOOD_VALUES).split("ports:", 1)
    text = manifest(service + "ports:" + pieces[1])
    findings = _k3s.lint_manifest(text)
    finding = assert_finding(findings, line_of(text, needle), "error", words)
    assert "Local" in (finding.fix or "")


def test_no_service_at_all() -> None:
    pieces = textwrap.dedent(GOOD_VALUES).split("ports:", 1)
    text = manifest("ports:" + pieces[1])
    (finding,) = _k3s.lint_manifest(text)
    assert finding.line == line_of(text, "ports:")
    assert finding.fix == "service.spec.externalTrafficPolicy: Local"


def test_old_chart_additional_arguments_with_migration() -> None:
    text = manifest("""\
        additionalArguments:
          - "--log.level=DEBUG"
          - "--entryPoints.web.proxyProtocol.trustedIPs=127.0.0.1/32,10.0.0.1/8"
          - "--entrypoints.websecure.proxyprotocol.insecure"
        service:
          spec:
            externalTrafficPolicy: Local
        """)
    findings = _k3s.lint_manifest(text)
    flag = line_of(text, "proxyProtocol.trustedIPs=")
    migration = assert_finding(findings, flag, "warning", "old chart's form",
                               "current charts write this flag themselves")
    assert migration.fix == 'ports.web.proxyProtocol.trustedIPs: ["127.0.0.1/32", "10.0.0.0/8"]'
    assert_finding(findings, flag, "error", "'10.0.0.1/8' has host bits set")
    insecure = assert_finding(findings, line_of(text, "proxyprotocol.insecure"), "error",
                              "insecure trusts PROXY headers from every peer")
    assert insecure.fix is not None and insecure.fix.startswith(
        "ports.websecure.proxyProtocol.trustedIPs")
    # web is covered by the migration line; websecure still lacks trustedIPs
    assert not any("'web' has no" in f.message for f in findings)
    assert_finding(findings, line_of(text, "additionalArguments"), "error",
                   "entry point 'websecure' has no")
    assert len(findings) == 4
    # with the chart's own value set too, the two flags conflict: an error
    both = manifest(GOOD_VALUES + "additionalArguments:\n"
                    "  - --entryPoints.web.proxyProtocol.trustedIPs=10.0.0.0/8\n")
    (conflict,) = _k3s.lint_manifest(both)
    assert (conflict.line, conflict.severity) == (line_of(both, "trustedIPs=10"), "error")
    assert "two conflicting flags" in conflict.message
    assert conflict.fix == 'ports.web.proxyProtocol.trustedIPs: ["10.0.0.0/8"]'


def test_old_stable_chart_keys_and_static_configuration() -> None:
    text = manifest(GOOD_VALUES + "proxyProtocol:\n  enabled: true\n"
                    "entryPoints:\n  web:\n    address: ':80'\n")
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "proxyProtocol:", 3), "error",
                   "old stable/traefik chart")
    assert_finding(findings, line_of(text, "entryPoints:"), "error",
                   "static configuration, not a chart value")
    assert len(findings) == 2


@pytest.mark.parametrize(("old", "new", "words", "fix"), [
    ("trustedIPs:\n", "trustedIps:\n", "(keys are case-sensitive)",
     "ports.websecure.proxyProtocol.trustedIPs"),
    ("trustedIPs:\n", "trustedIP:\n", "(unknown key)",
     "ports.websecure.proxyProtocol.trustedIPs"),
    ("trustedIPs:\n", "hosts:\n", "is not a known key",
     "one of insecure, trustedIPs"),
    ("  websecure:\n    proxyProtocol:", "  websecure:\n    proxyprotocol:",
     "(keys are case-sensitive)", "ports.websecure.proxyProtocol"),
    ("  websecure:\n    proxyProtocol:", "  websecure:\n    proxyProtocl:", "(unknown key)",
     "ports.websecure.proxyProtocol"),
    ("service:", "Service:", "(keys are case-sensitive)", "service"),
    ("    externalTrafficPolicy", "    externalTrafficpolicy", "(keys are case-sensitive)",
     "service.spec.externalTrafficPolicy"),
])
def test_keys_helm_would_ignore(old: str, new: str, words: str, fix: str) -> None:
    text = manifest(textwrap.dedent(GOOD_VALUES).replace(old, new, 1))
    findings = _k3s.lint_manifest(text)
    changed = new.strip().splitlines()[-1].strip()
    finding = assert_finding(findings, line_of(text, changed), "error", "is ignored"
                             if "known" not in words else "", words)
    assert finding.fix == fix
    # the misspelt section is still read, so its own problems are reported too
    assert all(f.severity == "error" for f in findings)


def test_misspelt_section_is_still_checked_inside() -> None:
    text = manifest(GOOD_VALUES.replace("  websecure:\n    proxyProtocol:",
                                        "  websecure:\n    proxyprotocol:")
                    .replace("- 2001:db8::/64", "- 2001:db8::1/64"))
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "2001:db8::1/64"), "error", "host bits")


def test_unknown_chart_keys_without_a_near_miss_are_left_alone() -> None:
    text = manifest(GOOD_VALUES + "someFutureKey: 1\ndeployment:\n  kind: DaemonSet\n")
    assert _k3s.lint_manifest(text) == []


def test_near_miss_of_a_minor_key_is_a_warning() -> None:
    text = manifest(GOOD_VALUES + "tolerationz: []\n")
    (finding,) = _k3s.lint_manifest(text)
    assert (finding.line, finding.severity, finding.fix) == (
        line_of(text, "tolerationz"), "warning", "tolerations")


def test_ingress_route_tcp_checks() -> None:
    route = textwrap.dedent("""\
        apiVersion: traefik.io/v1alpha1
        kind: IngressRouteTCP
        metadata:
          name: app
        spec:
          routes:
            - match: HostSNI(`*`)
              services:
                - name: plain
                  port: 80
                - name: bad
                  port: 81
                  proxyProtocol:
                    version: 3
                - name: transport
                  port: 82
                  serversTransport: proxy-v2
        """)
    text = manifest(GOOD_VALUES) + "---\n" + route
    findings = _k3s.lint_manifest(text)
    assert_finding(findings, line_of(text, "name: plain"), "warning", "'plain' gets no PROXY")
    assert_finding(findings, line_of(text, "version: 3"), "error", "version '3'")
    assert len(findings) == 2


def test_lint_values_helm_output() -> None:
    text = "USER-SUPPLIED VALUES:\n" + textwrap.dedent(GOOD_VALUES)
    assert _k3s.lint_values(text) == []
    assert _k3s.lint_values("COMPUTED VALUES:\n" + textwrap.dedent(GOOD_VALUES)) == []
    (nothing,) = _k3s.lint_values("USER-SUPPLIED VALUES:\nnull\n")  # helm's "no values"
    assert nothing.severity == "error" and "defaults" in nothing.message
    bare = _k3s.lint_values("USER-SUPPLIED VALUES:\nglobal:\n  systemDefaultRegistry: ''\n")
    assert {f.message.split(":")[0] for f in bare} == {
        "entry point 'web' has no proxyProtocol.trustedIPs",
        "entry point 'websecure' has no proxyProtocol.trustedIPs",
        "no service.spec.externalTrafficPolicy"}
    assert {f.line for f in bare} == {2}


def test_lint_values_empty() -> None:
    (finding,) = _k3s.lint_values("")
    assert finding.severity == "error" and "defaults" in finding.message


def test_yaml_syntax_error_raises_input_error() -> None:
    with pytest.raises(_k3s.InputError) as info:
        _k3s.lint_manifest("a: b\nc: [d\n")
    assert info.value.line >= 2
    assert "YAML syntax error" in info.value.message


def test_finding_format() -> None:
    finding = _k3s.Finding(7, "error", "what", "this\ninstead")
    assert finding.format("f.yaml") == "f.yaml:7: error: what; write instead: this instead"
    assert _k3s.Finding(1, "warning", "w").format("-") == "-:1: warning: w"


# --------------------------------------------------------------------------- exit statuses


def test_run_generate_and_usage_errors() -> None:
    status, out, err = run_cli("--trusted", "10.0.0.0/8")
    assert (status, err) == (_cli_k3s.EXIT_OK, "") and "kind: HelmChartConfig" in out
    for argv, words in [
        (["--trusted", "10.0.0.1/8"], "host bits set: did you mean 10.0.0.0/8?"),
        (["--trusted", "0.0.0.0/0"], "trusts every address"),
        (["--trusted", "nonsense"], "is not an IP network"),
        ([], "give at least one --trusted"),
        (["--check", "-", "--trusted", "10.0.0.0/8"], "give either"),
        (["--values", "-", "--app-port", "80"], "give either"),
        (["--trusted", "10.0.0.0/8", "--app-port", "0"], "1 to 65535"),
        (["--trusted", "10.0.0.0/8", "--entrypoint", "a b"], "entry point"),
    ]:
        status, out, err = run_cli(*argv)
        assert status == _cli_k3s.EXIT_USAGE, argv
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("proxyproto k3s-config: ") and words in err


def test_run_check_statuses(tmp_path: Path) -> None:
    good = tmp_path / "traefik-config.yaml"
    good.write_text(_k3s.helm_chart_config(["10.0.0.0/8"]), encoding="utf-8")
    assert run_cli("--check", str(good)) == (0, f"{good}: no problems found\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text(manifest(GOOD_VALUES.replace("Local", "Cluster")), encoding="utf-8")
    status, out, err = run_cli("--check", str(bad))
    assert (status, err) == (_cli_k3s.EXIT_ERRORS, "")
    assert out == (f"{bad}:{line_of(bad.read_text(), 'Cluster')}: error: externalTrafficPolicy: "
                   "Cluster replaces the client's address by a node's; write instead: "
                   "externalTrafficPolicy: Local\n")
    status, out, err = run_cli("--check", str(tmp_path / "missing.yaml"))
    assert (status, out) == (EXIT_FILE, "")
    assert err.count("\n") == 1 and "cannot read" in err and "No such file" in err
    status, _out, err = run_cli("--check", str(tmp_path))
    assert status == EXIT_FILE and err.count("\n") == 1
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"kind: \xff\xfe\n")
    status, _out, err = run_cli("--check", str(binary))
    assert status == _cli_k3s.EXIT_INPUT and "not UTF-8" in err and err.count("\n") == 1
    status, out, err = run_cli("--values", "-", stdin="ports: [\n")
    assert (status, out) == (_cli_k3s.EXIT_INPUT, "")
    assert err.startswith("<stdin>:") and "YAML syntax error" in err and err.count("\n") == 1


def test_run_values_from_stdin() -> None:
    text = "USER-SUPPLIED VALUES:\n" + textwrap.dedent(GOOD_VALUES)
    assert run_cli("--values", "-", stdin=text) == (0, "<stdin>: no problems found\n", "")
    status, out, _err = run_cli("--values", "-", "--entrypoint", "mqtt", stdin=text)
    assert status == 1 and out.startswith("<stdin>:") and "'mqtt'" in out


def test_check_and_values_are_exclusive() -> None:
    parser = argparse.ArgumentParser(prog="proxyproto")
    _cli_k3s.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["k3s-config", "--check", "a", "--values", "b"])
    assert info.value.code == 2


# --------------------------------------------------------------------------- as a subprocess


def test_subprocess_generate_then_check_stdin() -> None:
    generated = subprocess_cli("--trusted", "192.0.2.0/28", "--app-port", "8000")
    assert (generated.returncode, generated.stderr) == (0, "")
    checked = subprocess_cli("--check", "-", stdin=generated.stdout)
    assert (checked.returncode, checked.stdout, checked.stderr) == (
        0, "<stdin>: no problems found\n", "")


def test_subprocess_error_paths_print_one_line() -> None:
    bad_cidr = subprocess_cli("--trusted", "192.0.2.1/28")
    assert bad_cidr.returncode == 2 and bad_cidr.stdout == ""
    assert bad_cidr.stderr.count("\n") == 1 and "Traceback" not in bad_cidr.stderr
    missing = subprocess_cli("--check", "/nonexistent/traefik-config.yaml")
    assert missing.returncode == EXIT_FILE and missing.stderr.count("\n") == 1
    syntax = subprocess_cli("--check", "-", stdin="a: [\n")
    assert syntax.returncode == 3 and syntax.stderr.count("\n") == 1
    findings = subprocess_cli("--values", "-", stdin="service: {}\n")
    assert findings.returncode == 1 and findings.stderr == ""
    assert all(line.startswith("<stdin>:1: error: ") for line in findings.stdout.splitlines())


def test_subprocess_without_pyyaml() -> None:
    """Generation works without PyYAML; checking says which package to install."""
    generated = subprocess_cli("--trusted", "10.0.0.0/8", "--app-port", "8000",
                               prelude=NO_YAML)
    assert (generated.returncode, generated.stderr) == (0, "")
    assert generated.stdout == run_cli("--trusted", "10.0.0.0/8", "--app-port", "8000")[1]
    checked = subprocess_cli("--check", "-", stdin="a: b\n", prelude=NO_YAML)
    assert checked.returncode == _cli_k3s.EXIT_NO_YAML == 5 and checked.stdout == ""
    assert checked.stderr.count("\n") == 1 and "pip install 'proxyproto[k3s]'" in checked.stderr


def test_subprocess_help_has_examples() -> None:
    result = subprocess_cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--check" in result.stdout
    assert "helm -n kube-system get values traefik" in result.stdout


# --------------------------------------------------------------------------- the guide

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "traefik-k3s.rst"


def yaml_blocks(text: str) -> list[str]:
    """The contents of the ``.. code-block:: yaml`` blocks of an reST text, dedented."""
    blocks: list[str] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.strip() != ".. code-block:: yaml":
            continue
        body: list[str] = []
        for following in lines[index + 2:]:
            if following and not following.startswith("   "):
                break
            body.append(following[3:])
        blocks.append("\n".join(body).strip("\n") + "\n")
    return blocks


@pytest.mark.skipif(not GUIDE.exists(), reason="docs are not shipped with the package")
def test_guide_shows_the_tools_real_output() -> None:
    blocks = yaml_blocks(GUIDE.read_text(encoding="utf-8"))
    assert blocks[0] == _k3s.helm_chart_config(["192.0.2.0/28", "2001:db8:1::/64"])
    assert blocks[1] == "---\n" + _k3s.app_manifests(port=8000, namespace="apps")
    for block in blocks:
        assert list(yaml.safe_load_all(block))
    assert _k3s.lint_manifest(blocks[0] + blocks[1]) == []


def test_the_proxyproto_command_has_the_subcommand() -> None:
    """``python -m proxyproto k3s-config`` reaches this module through the real entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "proxyproto", "k3s-config", "--trusted", "10.0.0.1/8"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == _cli_k3s.EXIT_USAGE and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "10.0.0.0/8" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "proxyproto", "k3s-config", "--trusted", "10.0.0.0/8"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0 and "kind: HelmChartConfig" in done.stdout
