"""gunicorn workers that run uvicorn behind a PROXY-protocol proxy.

.. code-block:: console

   $ gunicorn -k proxyproto.gunicorn.UvicornWorker --proxy-allow-from 10.0.0.0/24 app:app

The trusted proxies are gunicorn's own ``--proxy-allow-from`` (``proxy_allow_ips``), or
``PROXYPROTO_TRUSTED`` (comma-separated CIDRs) when that is set. Each worker serves
uvicorn's HTTP protocol behind :func:`proxyproto.aio.uvicorn_http_protocol`: the ASGI
``scope["client"]`` is the header's client, refusals are logged on gunicorn's error log
(WARNING for a trusted proxy that sent no header or a bad one), and gunicorn's
``--certfile``/``--keyfile`` start TLS *after* the header. The other choices are class
attributes (subclass the worker to change them), each with an environment form that
wins over it, for a Kubernetes manifest or a systemd unit:

* ``PROXYPROTO_BAD_REQUEST=1``: answer a trusted proxy's missing or bad header with
  ``400 Bad Request`` (``BAD_REQUEST``);
* ``PROXYPROTO_TRUST_UNIX_PEERS=1``: trust the peers of a ``unix:`` bind, nginx or
  HAProxy on the same host (``TRUST_UNIX_PEERS``);
* ``PROXYPROTO_FORWARDED_HEADERS=1``: also honour ``X-Forwarded-For``
  (``FORWARDED_HEADERS``);
* ``PROXYPROTO_HEADER_TIMEOUT``: seconds, or ``none`` (``HEADER_TIMEOUT``).

Booleans are ``1``/``true``/``yes``/``on`` or ``0``/``false``/``no``/``off``; anything
else stops the worker at boot with the variable named.

Needs the ``gunicorn`` extra (``gunicorn`` and ``uvicorn-worker``).
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import Any, ClassVar, Optional

from uvicorn_worker import UvicornWorker as _UvicornWorker

from ._policy import DEFAULT_TIMEOUT, Policy
from ._trust import TrustedProxies
from .aio import uvicorn_http_protocol

__all__ = ["UvicornH11Worker", "UvicornWorker", "setting_from", "trusted_from"]

#: the environment form of the trusted list (wins over ``--proxy-allow-from``)
ENVIRONMENT_TRUSTED = "PROXYPROTO_TRUSTED"
#: the environment forms of the worker's class attributes (they win over them)
ENVIRONMENT_SETTINGS = {
    "BAD_REQUEST": "PROXYPROTO_BAD_REQUEST",
    "TRUST_UNIX_PEERS": "PROXYPROTO_TRUST_UNIX_PEERS",
    "FORWARDED_HEADERS": "PROXYPROTO_FORWARDED_HEADERS",
    "HEADER_TIMEOUT": "PROXYPROTO_HEADER_TIMEOUT",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

_EVERYONE = ("0.0.0.0/0", "::/0")


def trusted_from(proxy_allow_ips: Any, environ: Optional[dict[str, str]] = None) -> list[str]:
    """The trusted CIDRs: ``PROXYPROTO_TRUSTED`` when set, else gunicorn's
    ``proxy_allow_ips`` (a list, or a comma-separated string; ``*`` is everyone).

    Raises:
        ValueError: an entry that is not a network (checked as ``TrustedProxies`` does).
    """
    environment = os.environ if environ is None else environ
    text = environment.get(ENVIRONMENT_TRUSTED, "").strip()
    if text:
        entries = text.split(",")
    elif isinstance(proxy_allow_ips, str):
        entries = proxy_allow_ips.split(",")
    else:
        entries = list(proxy_allow_ips or ())
    cidrs: list[str] = []
    for entry in (str(entry).strip() for entry in entries):
        if entry == "*":
            cidrs.extend(_EVERYONE)
        elif entry:
            cidrs.append(entry)
    TrustedProxies(cidrs)  # every entry checked now: a typo stops the worker at boot
    return cidrs


def setting_from(name: str, default: Any, environ: Optional[dict[str, str]] = None) -> Any:
    """A worker setting (a key of ``ENVIRONMENT_SETTINGS``): its environment variable
    when set and not empty, else ``default`` (the class attribute).

    Raises:
        ValueError: a value that is not a boolean (or, for ``HEADER_TIMEOUT``, not a
            positive number of seconds or ``none``), with the variable named.
    """
    variable = ENVIRONMENT_SETTINGS[name]
    environment = os.environ if environ is None else environ
    text = environment.get(variable, "").strip().lower()
    if not text:
        return default
    if name == "HEADER_TIMEOUT":
        if text == "none":
            return None
        try:
            seconds = float(text)
        except ValueError:
            seconds = 0.0
        if not seconds > 0 or seconds == float("inf"):
            raise ValueError(f"{variable}={text!r}: seconds (greater than 0) or 'none'")
        return seconds
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{variable}={text!r}: 1/true/yes/on or 0/false/no/off")


class UvicornWorker(_UvicornWorker):  # type: ignore[misc]  # (untyped base)
    """``uvicorn_worker.UvicornWorker`` with the PROXY layer in front of each connection.

    Attributes (the last four also read from the environment, see the module doc):
        PROXY_POLICY: the policy for trusted proxies (default ``REQUIRE``).
        HEADER_TIMEOUT: seconds for the header to arrive (default 5).
        FORWARDED_HEADERS: also honour ``X-Forwarded-For`` from gunicorn's
            ``--forwarded-allow-ips`` (off: the address comes from the header only).
        BAD_REQUEST: answer a trusted proxy's missing or bad header with ``400``.
        TRUST_UNIX_PEERS: trust the peers of a ``unix:`` bind (off by default).
    """

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto"}
    PROXY_POLICY: ClassVar[Policy] = Policy.REQUIRE
    HEADER_TIMEOUT: ClassVar[Optional[float]] = DEFAULT_TIMEOUT
    FORWARDED_HEADERS: ClassVar[bool] = False
    BAD_REQUEST: ClassVar[bool] = False
    TRUST_UNIX_PEERS: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        config = self.config
        trusted = trusted_from(self.cfg.proxy_allow_ips)
        if any(cidr in _EVERYONE for cidr in trusted):
            logging.getLogger("uvicorn.error").warning(
                "proxyproto: every peer may send a PROXY header (proxy_allow_ips '*')")
        context = None
        if config.ssl_certfile:  # TLS after the header, not before it
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile,
                                    config.ssl_keyfile_password)
            if config.ssl_ca_certs:
                context.load_verify_locations(config.ssl_ca_certs)
            config.ssl_certfile = config.ssl_keyfile = None
        http = self.CONFIG_KWARGS.get("http", "auto")
        forwarded_headers = setting_from("FORWARDED_HEADERS", self.FORWARDED_HEADERS)
        config.http = uvicorn_http_protocol(
            trusted=trusted, http=http, policy=self.PROXY_POLICY,
            timeout=setting_from("HEADER_TIMEOUT", self.HEADER_TIMEOUT),
            forwarded_headers=forwarded_headers,
            bad_request=setting_from("BAD_REQUEST", self.BAD_REQUEST),
            trust_unix_peers=setting_from("TRUST_UNIX_PEERS", self.TRUST_UNIX_PEERS),
            ssl=context)
        config.proxy_headers = forwarded_headers


class UvicornH11Worker(UvicornWorker):
    """:class:`UvicornWorker` with the pure-Python h11 implementation and asyncio's loop."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "asyncio", "http": "h11"}
