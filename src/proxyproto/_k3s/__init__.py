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

from ._generate import app_manifests, helm_chart_config, values_content
from ._lint import lint_manifest, lint_values
from ._networks import (
    DEFAULT_ENTRYPOINTS,
    K3S_CLUSTER_CIDR,
    TRAEFIK_CONFIG_PATH,
    ConfigInputError,
    InputError,
    parse_network,
    trusted_networks,
)
from ._nodes import Finding

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
