"""Interop tests: proxyproto against real HAProxy, nginx and curl processes.

Every test here is marked ``interop``. The programs come from the distribution's
packages (``.ci/run`` installs them); on a machine without them the tests skip, except
under ``CI=true`` where a missing program is a failure.
"""
