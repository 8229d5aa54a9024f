"""What the Traefik chart knows: the keys at each level of its values, the old flags."""

from __future__ import annotations

import re

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
