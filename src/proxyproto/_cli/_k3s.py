"""``proxyproto k3s-config``: write or check Traefik's HelmChartConfig on k3s.

A subcommand module (``register`` adds the parser, ``run`` returns the exit status). It
keeps the Traefik/k3s knowledge in :mod:`proxyproto._k3s` (pure, testable logic) and
does only the command-line part here. Exit statuses:

* 0: the configuration was printed, or the checked file has no errors (warnings allowed);
* 1: the checked file has errors (one line per finding);
* 2: bad options, such as an invalid ``--trusted`` network (one line);
* 3: the file is not UTF-8 text or not YAML at all (one line);
* 4: the file cannot be read (one line);
* 5: ``--check`` / ``--values`` need PyYAML, which is not installed (one line).

These are the command line's own statuses (``proxyproto._cli._common``).
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

# absolute on purpose: "from . import _k3s" would be this module itself
from proxyproto import _k3s

from ._common import EXIT_BAD_INPUT, EXIT_FILE, EXIT_MISSING_EXTRA, EXIT_OK, EXIT_USAGE

__all__ = ["EXIT_ERRORS", "EXIT_INPUT", "EXIT_NO_YAML", "EXIT_OK", "EXIT_USAGE", "register",
           "run"]

EXIT_ERRORS = 1  #: the checked file has errors
EXIT_INPUT = EXIT_BAD_INPUT
EXIT_NO_YAML = EXIT_MISSING_EXTRA

_PROG = "proxyproto k3s-config"

_EPILOG = f"""\
examples:
  # the HelmChartConfig for a load balancer at 192.0.2.0/28 sending PROXY headers
  {_PROG} --trusted 192.0.2.0/28 | sudo tee {_k3s.TRAEFIK_CONFIG_PATH}

  # ServiceLB alone, nothing in front sending PROXY headers: only externalTrafficPolicy
  {_PROG} --service-only

  # only the websecure entry point, plus the app side for `proxyproto whoami` on port 8000
  {_PROG} --trusted 192.0.2.0/28 --entrypoint websecure --app-port 8000

  # check the file, then what Helm really applied
  {_PROG} --check {_k3s.TRAEFIK_CONFIG_PATH}
  helm -n kube-system get values traefik | {_PROG} --values -

exit status: 0 printed / no errors, 1 errors found, 2 bad options, 3 not UTF-8 or a YAML
syntax error, 4 unreadable file, 5 PyYAML missing (pip install 'proxyproto[k3s]')
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``k3s-config`` parser to ``subparsers`` and set ``func=run``."""
    parser = subparsers.add_parser(
        "k3s-config",
        help="print or check the HelmChartConfig that lets client addresses through Traefik",
        description="Print the HelmChartConfig that makes k3s' Traefik keep client addresses "
                    "(externalTrafficPolicy: Local) and accept PROXY headers from trusted "
                    "load balancers only, or check an existing one.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", metavar="FILE",
                      help="check a HelmChartConfig manifest (FILE or - for stdin)")
    mode.add_argument("--values", metavar="FILE",
                      help="check the output of `helm -n kube-system get values traefik` "
                           "(FILE or - for stdin)")
    parser.add_argument("--trusted", action="append", default=[], metavar="CIDR",
                        help="a network allowed to send PROXY headers to Traefik (repeatable; "
                             "required unless checking)")
    parser.add_argument("--entrypoint", action="append", default=[], metavar="NAME",
                        help="a Traefik entry point to configure or check (repeatable; "
                             "default: web and websecure)")
    parser.add_argument("--service-only", action="store_true",
                        help="nothing in front of the nodes sends PROXY headers (ServiceLB "
                             "alone): write or require only externalTrafficPolicy: Local, no "
                             "entry point settings")
    app = parser.add_argument_group("app side (optional)")
    app.add_argument("--app-port", type=int, metavar="PORT",
                     help="also print an IngressRouteTCP sending PROXY v2, and a Deployment + "
                          "Service for `proxyproto whoami` on this port")
    app.add_argument("--app-name", default="whoami", metavar="NAME",
                     help="name of the route, Service and Deployment (default: whoami)")
    app.add_argument("--namespace", default="default", metavar="NS",
                     help="namespace of the app (default: default)")
    app.add_argument("--traefik-api", default="v3", choices=["v2", "v3"],
                     help="IngressRouteTCP API group: v3 traefik.io (default), "
                          "v2 traefik.containo.us")
    app.add_argument("--app-trusted", action="append", default=[], metavar="CIDR",
                     help="what the app trusts: Traefik's pod addresses (repeatable; default: "
                          f"k3s' cluster CIDR {_k3s.K3S_CLUSTER_CIDR})")
    app.add_argument("--app-entrypoint", default=None, metavar="NAME",
                     help="entry point of the IngressRouteTCP (default: the last --entrypoint)")
    app.add_argument("--app-sni", default="*", metavar="HOST",
                     help="route by TLS SNI (TLS passthrough); default * takes every "
                          "connection on the entry point")
    parser.set_defaults(func=run)


def _fail(status: int, message: str, err: TextIO) -> int:
    print(f"{_PROG}: {message}", file=err)
    return status


def _read(path: str, stdin: TextIO) -> str:
    if path == "-":
        return stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _lint(args: argparse.Namespace, entrypoints: list[str], out: TextIO, err: TextIO,
          stdin: TextIO) -> int:
    path = args.check if args.check is not None else args.values
    shown = "<stdin>" if path == "-" else path
    try:
        import yaml  # noqa: F401  (the lint functions import it again, lazily)
    except ImportError:
        return _fail(EXIT_NO_YAML, "--check and --values read YAML with PyYAML, which is not "
                     "installed: pip install 'proxyproto[k3s]'", err)
    try:
        text = _read(path, stdin)
    except OSError as exc:
        return _fail(EXIT_FILE, f"cannot read {shown}: {exc.strerror or exc}", err)
    except UnicodeDecodeError as exc:
        return _fail(EXIT_INPUT, f"cannot read {shown}: not UTF-8 text ({exc.reason} at byte "
                     f"{exc.start})", err)
    try:
        if args.check is not None:
            findings = _k3s.lint_manifest(text, entrypoints, filename=path)
        else:
            findings = _k3s.lint_values(text, entrypoints)
    except _k3s.InputError as exc:
        print(f"{shown}:{exc.line}: error: {exc.message}", file=err)
        return EXIT_INPUT
    for finding in findings:
        print(finding.format(shown), file=out)
    errors = sum(1 for f in findings if f.severity == "error")
    if errors:
        return EXIT_ERRORS
    if not findings:
        print(f"{shown}: no problems found", file=out)
    return EXIT_OK


def run(args: argparse.Namespace, *, out: TextIO | None = None, err: TextIO | None = None,
        stdin: TextIO | None = None) -> int:
    """Run ``k3s-config`` with parsed ``args``; return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    stdin = sys.stdin if stdin is None else stdin
    entrypoints = args.entrypoint or list(_k3s.DEFAULT_ENTRYPOINTS)
    if args.service_only:
        if args.entrypoint or args.trusted:
            return _fail(EXIT_USAGE, "--service-only writes no entry point settings: drop "
                         "--trusted and --entrypoint", err)
        entrypoints = []
    try:
        if args.check is not None or args.values is not None:
            if args.trusted or args.app_port is not None:
                return _fail(EXIT_USAGE, "--trusted and --app-port write a configuration; "
                             "--check and --values read one (give either)", err)
            return _lint(args, entrypoints, out, err, stdin)
        if not args.trusted and not args.service_only:
            return _fail(EXIT_USAGE, "give at least one --trusted CIDR (the load balancer's "
                         "networks), or --check FILE / --values FILE", err)
        text = _k3s.helm_chart_config(args.trusted, entrypoints)
        if args.app_port is not None:
            text += "---\n" + _k3s.app_manifests(
                port=args.app_port, name=args.app_name, namespace=args.namespace,
                app_trusted=args.app_trusted or [_k3s.K3S_CLUSTER_CIDR],
                traefik_api=args.traefik_api,
                entrypoint=args.app_entrypoint or (entrypoints or ["websecure"])[-1],
                sni=args.app_sni)
    except _k3s.ConfigInputError as exc:
        return _fail(EXIT_USAGE, str(exc), err)
    out.write(text)
    return EXIT_OK
