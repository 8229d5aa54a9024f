"""The ``proxyproto`` command: decode, encode and send PROXY headers; show what a proxy
sends (``whoami``); a one-command tour on loopback (``demo``).

Each sub-command is a module of this package with ``register(subparsers)``, which adds
its parser and sets ``func=run``, and ``run(args) -> int``, which turns every failure it
expects into one line on stderr and an exit status (``_common``; listed in docs/cli.rst).
Adding a sub-command is one more name in :data:`SUBCOMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Optional

from .. import _impl
from ._common import EXIT_INTERRUPTED, EXIT_WRITE, CommandParser, fail

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: The sub-command modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "_decode", "_encode", "_send", "_whoami", "_demo", "_uvicorn", "_k3s",
)

_EPILOG = """\
examples:
  proxyproto demo                       a tour on loopback: what is served, what is refused
  proxyproto encode --source 192.0.2.1:51000 --destination 10.0.0.1:443 --authority example.com
  proxyproto decode 0d0a0d0a000d0a515549540a20000000
  proxyproto send 127.0.0.1:8000 --v1 --source 203.0.113.9:4000 --destination 10.0.0.1:80 --http /
  proxyproto whoami --listen 127.0.0.1:8000 --trusted 127.0.0.1

'proxyproto COMMAND --help' shows each command's options and examples;
exit statuses: docs/cli.rst (0 ok, 2 usage, 3 bad input, 7 could not connect, ...).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``proxyproto`` command, with every sub-command."""
    from .. import __version__

    parser = CommandParser(
        prog="proxyproto",
        description="Decode, encode and send HAProxy PROXY protocol headers; show what a "
                    "proxy sends.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version",
                        version=f"proxyproto {__version__} ({_impl.IMPLEMENTATION})")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status (see docs/cli.rst)."""
    for stream in (sys.stdout, sys.stderr):
        # escaped output keeps printable non-ASCII text: never fail on a narrow locale
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    try:
        args = build_parser().parse_args(argv)
        status: int = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # stdout closed early (``| head``): say so once; keep Python from complaining again
        # when it flushes stdout at exit
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError):  # no real file descriptor (stdout replaced)
            pass
        return fail("output closed early (broken pipe)", EXIT_WRITE)
    return status
