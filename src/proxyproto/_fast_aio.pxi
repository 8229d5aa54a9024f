# What the asyncio layer runs once per connection, in C: the header's addresses written
# into a transport's extra-info dict, the ASGI scope extension of the uvicorn integration,
# and the header deadlines' timerfd. The references are in aio/_transport.py,
# aio/_uvicorn.py and aio/_deadlines.py (the deadlines use asyncio's timers without it).

cdef class ProxiedSocket:
    """``aio._transport.ProxiedSocketPython``, in C: the transport's socket, with
    ``getpeername``/``getsockname`` reporting the header's addresses."""

    cdef public object _sock
    cdef public object _peername
    cdef public object _sockname

    def __init__(self, sock, peername, sockname):
        self._sock = sock
        self._peername = peername
        self._sockname = sockname

    def getpeername(self):
        """The original client address."""
        return self._peername

    def getsockname(self):
        """The original destination address."""
        return self._sockname

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def __repr__(self):
        return f"<ProxiedSocket peername={self._peername!r} of {self._sock!r}>"


def report_in_place(dict extra, header, received, peer, local):
    """``aio._transport.report_in_place_python``, in C: the header's addresses and the
    layer's keys written into a transport's own extra-info dict."""
    cdef ProxiedSocket proxied
    extra["socket_peername"] = peer
    extra["socket_sockname"] = local
    extra["proxy_header"] = header
    extra["proxy_header_received"] = received
    if header is None:
        return
    source = header.source
    destination = header.destination
    if source is None and destination is None:  # LOCAL, UNKNOWN: the socket's own
        return
    if source is not None:
        peer = source
        extra["peername"] = source
    if destination is not None:
        local = destination
        extra["sockname"] = destination
    sock = extra.get("socket")
    if sock is not None:
        proxied = ProxiedSocket.__new__(ProxiedSocket)
        proxied._sock = sock
        proxied._peername = peer
        proxied._sockname = local
        extra["socket"] = proxied


cdef class ProxyExtensionApp:
    """``aio._uvicorn.ProxyExtensionAppPython``, in C: an ASGI app that puts
    ``extension`` in ``scope["extensions"]["proxy_protocol"]`` and calls ``app``."""

    cdef public object app
    cdef public object extension

    def __call__(self, scope, receive, send):
        extensions = scope.get("extensions")
        if extensions is None:
            scope["extensions"] = {"proxy_protocol": self.extension}
        else:
            extensions["proxy_protocol"] = self.extension
        return self.app(scope, receive, send)


cdef extern from *:
    """
    #ifdef __linux__
    #include <sys/timerfd.h>
    #include <time.h>
    #include <errno.h>
    static int pp_timer_fd_open(void) {
        return timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    }
    /* Arm fd to fire once at `when` (seconds on CLOCK_MONOTONIC; <= 0: disarm). */
    static int pp_timer_fd_arm(int fd, double when) {
        struct itimerspec spec = {{0, 0}, {0, 0}};
        if (when > 0) {
            spec.it_value.tv_sec = (time_t)when;
            spec.it_value.tv_nsec = (long)((when - (double)spec.it_value.tv_sec) * 1e9);
            if (spec.it_value.tv_nsec >= 1000000000L) spec.it_value.tv_nsec = 999999999L;
            if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0)
                spec.it_value.tv_nsec = 1;  /* all zeros would disarm it */
        }
        return timerfd_settime(fd, TFD_TIMER_ABSTIME, &spec, NULL);
    }
    #define PP_HAVE_TIMER_FD 1
    #else
    #include <errno.h>
    static int pp_timer_fd_open(void) { errno = ENOSYS; return -1; }
    static int pp_timer_fd_arm(int fd, double when) { errno = ENOSYS; return -1; }
    #define PP_HAVE_TIMER_FD 0
    #endif
    """
    int pp_timer_fd_open()
    int pp_timer_fd_arm(int fd, double when)
    int PP_HAVE_TIMER_FD

from cpython.exc cimport PyErr_SetFromErrno

#: whether this build has :func:`open_timer_fd` (Linux)
HAVE_TIMER_FD = bool(PP_HAVE_TIMER_FD)


def open_timer_fd():
    """A new non-blocking, close-on-exec timerfd on ``CLOCK_MONOTONIC`` (disarmed).

    Raises:
        OSError: the kernel's refusal (``ENOSYS`` where there is no timerfd).
    """
    cdef int fd = pp_timer_fd_open()
    if fd < 0:
        PyErr_SetFromErrno(OSError)
    return fd


def arm_timer_fd(int fd, double when):
    """Make ``fd`` readable at ``when`` (``time.monotonic()`` seconds); ``0``: disarm.

    Raises:
        OSError: the kernel's refusal (a closed ``fd``, say).
    """
    if pp_timer_fd_arm(fd, when) < 0:
        PyErr_SetFromErrno(OSError)
