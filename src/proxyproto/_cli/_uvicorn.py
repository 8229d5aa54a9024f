"""``proxyproto uvicorn``: run an ASGI app with uvicorn behind a PROXY-protocol proxy.

``register(subparsers)`` adds the sub-command; ``run(args)`` runs it and returns the exit
status. uvicorn's usual options are passed through; the PROXY layer
(:func:`proxyproto.aio.uvicorn_http_protocol`) trusts the ``--trusted`` networks (or the
comma-separated ``PROXYPROTO_TRUSTED``). ``--ssl-certfile``/``--ssl-keyfile`` start TLS
*after* the header, as a TLS-passthrough proxy sends it.

With ``--workers`` above 1, uvicorn starts the workers as new processes: the options
travel to them in the environment (``PROXYPROTO_UVICORN_OPTIONS``, JSON) and each worker
builds its own PROXY layer from them.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from typing import Any

from .._policy import DEFAULT_TIMEOUT, Policy, TrustedProxies
from ._common import EXIT_FILE, EXIT_LISTEN, EXIT_MISSING_EXTRA, EXIT_USAGE

__all__ = ["ENVIRONMENT_TRUSTED", "register", "run"]

#: the environment form of ``--trusted``: CIDRs separated by commas
ENVIRONMENT_TRUSTED = "PROXYPROTO_TRUSTED"
#: how the options reach uvicorn's worker processes (internal)
_ENVIRONMENT_OPTIONS = "PROXYPROTO_UVICORN_OPTIONS"

#: exit statuses (the command line's own, see docs/cli.rst)
EXIT_APP = 1  # the application could not be imported
EXIT_STARTUP = EXIT_LISTEN  # uvicorn could not start (address in use...)

_EPILOG = """\
examples:
  proxyproto uvicorn app:app --trusted 10.42.0.0/16 --host 0.0.0.0 --port 8000
  PROXYPROTO_TRUSTED=10.0.0.5,10.0.0.6 proxyproto uvicorn app:app --workers 4
  proxyproto uvicorn app:app --trusted 10.0.0.0/24 --ssl-certfile c.pem --ssl-keyfile k.pem
  proxyproto uvicorn app:app --uds /run/app.sock --trust-unix-peers --trusted 127.0.0.1
  proxyproto uvicorn app:app --trusted 10.0.0.0/24 --forwarded-headers \\
      --forwarded-allow-ips 10.0.0.7      # an HTTP proxy behind the TCP one

exit status: 0 stopped normally, 1 the app could not be imported, 2 bad arguments,
4 a TLS file could not be read, 5 uvicorn (or httptools) is not installed,
10 uvicorn could not start (e.g. the address is in use).
"""


def _cidr(text: str) -> str:
    """An argparse type: one CIDR (or bare address), checked now, kept as written."""
    try:
        TrustedProxies([text])
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f"bad CIDR {text!r}: {exc}") from None
    return text


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers >= 1, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0..65535, got {text!r}")
    return int(text)


_POLICIES = {policy.name.lower(): policy for policy in Policy}


def register(subparsers: Any) -> None:
    """Add the ``uvicorn`` sub-command to an ``argparse`` sub-parsers object."""
    parser = subparsers.add_parser(
        "uvicorn", help="run an ASGI app with uvicorn behind a PROXY-protocol proxy",
        description="Run MODULE:APP with uvicorn; connections start with a PROXY header "
                    "from a trusted proxy, and the app sees the original client.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("app", metavar="MODULE:APP", help="the ASGI app, as for uvicorn")
    proxy = parser.add_argument_group("PROXY protocol")
    proxy.add_argument("--trusted", metavar="CIDR", action="append", type=_cidr, default=[],
                       help=f"a proxy allowed to send a header (repeat; default: "
                            f"${ENVIRONMENT_TRUSTED}, comma-separated)")
    proxy.add_argument("--policy", choices=sorted(_POLICIES), default="require",
                       help="for trusted peers (default: require a header)")
    proxy.add_argument("--header-timeout", metavar="SECONDS", type=_positive,
                       default=DEFAULT_TIMEOUT,
                       help=f"for the header to arrive (default {DEFAULT_TIMEOUT:g})")
    proxy.add_argument("--handshake-timeout", metavar="SECONDS", type=_positive,
                       help="for the TLS handshake after the header (default: the header "
                            "timeout)")
    proxy.add_argument("--trust-unix-peers", action="store_true",
                       help="with --uds: trust the UNIX-socket peers (nginx or HAProxy on "
                            "this host); refused otherwise")
    proxy.add_argument("--bad-request", action="store_true",
                       help="answer a trusted peer's missing or bad header with 400")
    proxy.add_argument("--forwarded-headers", action="store_true",
                       help="also honour X-Forwarded-For/-Proto from --forwarded-allow-ips "
                            "(off: the client address comes from the header only)")
    proxy.add_argument("--forwarded-allow-ips", metavar="LIST",
                       help="uvicorn's: who may send X-Forwarded-* (with --forwarded-headers)")
    server = parser.add_argument_group("uvicorn")
    server.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    server.add_argument("--port", type=_port, default=8000, help="bind port (default 8000)")
    server.add_argument("--uds", metavar="PATH", help="bind a UNIX socket instead")
    server.add_argument("--workers", type=_workers, default=1, help="worker processes")
    server.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto")
    server.add_argument("--ws", default="auto",
                        choices=("auto", "none", "websockets", "websockets-sansio", "wsproto"))
    server.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto")
    server.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug", "trace"))
    server.add_argument("--no-access-log", dest="access_log", action="store_false")
    server.add_argument("--root-path", default="")
    server.add_argument("--app-dir", default=".",
                        help="directory added to the module search path (default .)")
    server.add_argument("--factory", action="store_true", help="MODULE:APP is a factory")
    server.add_argument("--ssl-certfile", metavar="FILE", help="TLS after the header")
    server.add_argument("--ssl-keyfile", metavar="FILE")
    parser.set_defaults(func=run)


def _fail(status: int, message: str) -> int:
    print(f"proxyproto uvicorn: {message}", file=sys.stderr)
    return status


def _trusted(args: argparse.Namespace) -> list[str] | str:
    """The trusted CIDRs, or the one-line reason there are none."""
    if args.trusted:
        return list(args.trusted)
    text = os.environ.get(ENVIRONMENT_TRUSTED, "")
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    if not entries:
        return f"no trusted proxy: give --trusted CIDR or set {ENVIRONMENT_TRUSTED}"
    for entry in entries:
        try:
            _cidr(entry)
        except argparse.ArgumentTypeError as exc:
            return f"{ENVIRONMENT_TRUSTED}: {exc}"
    return entries


def _layer_options(args: argparse.Namespace, trusted: list[str]) -> dict[str, Any]:
    """What the PROXY layer is built from, JSON-ready (so that workers can rebuild it)."""
    return {"trusted": trusted, "http": args.http, "policy": args.policy,
            "timeout": args.header_timeout, "handshake_timeout": args.handshake_timeout,
            "forwarded_headers": args.forwarded_headers, "bad_request": args.bad_request,
            "certfile": args.ssl_certfile, "keyfile": args.ssl_keyfile,
            "trust_unix_peers": args.trust_unix_peers}


def _http_protocol(options: dict[str, Any]) -> Any:
    """The ``uvicorn.Config(http=)`` class for ``options`` (from :func:`_layer_options`)."""
    from ..aio import uvicorn_http_protocol

    context = None
    if options["certfile"]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(options["certfile"], options["keyfile"])
    return uvicorn_http_protocol(
        trusted=TrustedProxies(options["trusted"]), http=options["http"],
        policy=_POLICIES[options["policy"]], timeout=options["timeout"], ssl=context,
        ssl_handshake_timeout=options["handshake_timeout"],
        forwarded_headers=options["forwarded_headers"], bad_request=options["bad_request"],
        trust_unix_peers=options["trust_unix_peers"])


def __getattr__(name: str) -> Any:
    # uvicorn's worker processes import ``<this module>:_from_environment`` as their
    # ``http`` class: built once per process from the parent's options
    if name == "_from_environment":
        protocol = _http_protocol(json.loads(os.environ[_ENVIRONMENT_OPTIONS]))
        globals()[name] = protocol
        return protocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(args: argparse.Namespace) -> int:
    """Run the ``uvicorn`` sub-command; the exit status."""
    try:
        import uvicorn
        from uvicorn.importer import ImportFromStringError, import_from_string
    except ImportError:
        return _fail(EXIT_MISSING_EXTRA,
                     "uvicorn is not installed (pip install 'proxyproto[uvicorn]')")
    trusted = _trusted(args)
    if isinstance(trusted, str):
        return _fail(EXIT_USAGE, trusted)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        return _fail(EXIT_USAGE, "--ssl-certfile and --ssl-keyfile go together")
    if args.trust_unix_peers and not args.uds:
        return _fail(EXIT_USAGE, "--trust-unix-peers needs --uds")
    if args.forwarded_allow_ips and not args.forwarded_headers:
        return _fail(EXIT_USAGE, "--forwarded-allow-ips needs --forwarded-headers")
    options = _layer_options(args, trusted)
    try:
        http = _http_protocol(options)
    except (OSError, ssl.SSLError) as exc:
        return _fail(EXIT_FILE, f"cannot load the TLS certificate or key: {exc}")
    except ImportError as exc:
        return _fail(EXIT_MISSING_EXTRA, f"--http {args.http}: {exc}")
    sys.path.insert(0, os.path.abspath(args.app_dir))
    try:
        import_from_string(args.app)
    except ImportFromStringError as exc:
        return _fail(EXIT_APP, str(exc))
    except Exception as exc:  # the app module itself failed: its error, on one line
        return _fail(EXIT_APP, f"cannot import {args.app}: {type(exc).__name__}: {exc}")
    settings: dict[str, Any] = {
        "host": args.host, "port": args.port, "uds": args.uds, "ws": args.ws,
        "lifespan": args.lifespan, "log_level": args.log_level, "access_log": args.access_log,
        "root_path": args.root_path, "factory": args.factory,
        "proxy_headers": args.forwarded_headers,
        "forwarded_allow_ips": args.forwarded_allow_ips, "server_header": True}
    if args.workers > 1:
        os.environ[_ENVIRONMENT_OPTIONS] = json.dumps(options)
        try:
            uvicorn.run(args.app, workers=args.workers, http=f"{__name__}:_from_environment",
                        **settings)
        except SystemExit as exc:
            return EXIT_STARTUP if exc.code else 0
        return 0
    config = uvicorn.Config(args.app, http=http, **settings)
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    except SystemExit as exc:  # uvicorn gave up (its reason is logged already)
        return EXIT_STARTUP if exc.code else 0
    finally:
        if args.uds and os.path.exists(args.uds):
            os.remove(args.uds)
    return 0 if server.started else EXIT_STARTUP
