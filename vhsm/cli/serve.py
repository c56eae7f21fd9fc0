"""`vhsm serve`: run the network HSM in the foreground or detached."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from vhsm.excrypt import DeviceError
from vhsm.server import ADMIN_PORT, PROD_PORT, Limits, run
from vhsm.tlsports import TlsSetupError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vhsm serve", description="serve the virtual HSM on its production port "
                                "(Excrypt over mutual TLS) and its management port")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=PROD_PORT, help=f"production port (default {PROD_PORT})")
    p.add_argument("--admin-port", type=int, default=ADMIN_PORT,
                   help=f"management port for `connect tcp` (default {ADMIN_PORT}; -1 turns it off)")
    p.add_argument("--detach", action="store_true", help="run in the background (needs --pid-file)")
    p.add_argument("--pid-file")
    p.add_argument("--log-file", help="log here instead of standard error")
    p.add_argument("--log-level", default="INFO", choices=["ERROR", "WARNING", "INFO", "DEBUG"])
    p.add_argument("--idle-timeout", type=float, default=300.0, help="seconds before an idle client is dropped")
    p.add_argument("--handshake-timeout", type=float, default=10.0)
    p.add_argument("--max-message", type=int, default=Limits.max_message, help="largest frame in bytes")
    p.add_argument("--max-clients", type=int, default=Limits.max_clients)
    p.add_argument("--workers", type=int, default=0,
                   help="serve from this many worker processes sharing the ports and the state (default: one process)")
    return p


def serve(state: str, argv: list[str]) -> int:
    a = parser().parse_args(argv)
    if a.detach and not a.pid_file:
        print("vhsm serve: --detach needs --pid-file", file=sys.stderr)
        return 2
    if a.workers < 0:
        print("vhsm serve: --workers must be 1 or more", file=sys.stderr)
        return 2
    handler: logging.Handler
    if a.log_file:
        fd = os.open(a.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        handler = logging.StreamHandler(os.fdopen(fd, "a", buffering=1))
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s vhsm[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("vhsm")
    root.handlers[:] = [handler]
    root.setLevel(a.log_level)
    root.propagate = False
    if a.detach:
        _daemonize()
    limits = Limits(max_message=a.max_message, handshake_timeout=a.handshake_timeout,
                    idle_timeout=a.idle_timeout, max_clients=a.max_clients)
    try:
        if a.workers:
            from vhsm import workers
            return workers.run(state, a.host, a.port, None if a.admin_port < 0 else a.admin_port, a.workers,
                               pid_file=os.path.abspath(a.pid_file) if a.pid_file else None, limits=limits)
        return run(state, a.host, a.port, None if a.admin_port < 0 else a.admin_port,
                   pid_file=os.path.abspath(a.pid_file) if a.pid_file else None, limits=limits)
    except (OSError, TlsSetupError, DeviceError) as e:  # no port, no usable TLS key, no store (cluster node)
        root.error("cannot serve: %s", e)
        return 1


def _daemonize() -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
