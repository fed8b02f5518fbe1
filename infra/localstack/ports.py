"""Free TCP ports for the local servers.

Ports are picked by the kernel (bind to port 0) so that two platforms on one machine never
collide, and a port chosen once is reused on the next start while it is still free.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Mapping


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # Same option the servers use, so a port in TIME_WAIT after our own restart counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def cannot_listen_on(host: str) -> str | None:
    """Why this machine cannot listen on ``host`` (not one of its addresses), or None when it can."""
    try:
        infos = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as e:
        return f"{host} does not resolve ({e})"
    problem = f"{host} is not an address of this machine"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as s:
            try:
                s.bind(address)  # port 0: any free port, so only the address is tested
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    problem = f"cannot listen on {host}: {e.strerror or e}"
                continue
            return None
    return problem


def choose_ports(names: Iterable[str], stored: Mapping[str, int], host: str = "127.0.0.1") -> dict[str, int]:
    """A distinct port per name: the stored one when still free, else a new one."""
    chosen: dict[str, int] = {}
    for name in names:
        port = stored.get(name)
        if port is None or port in chosen.values() or not port_is_free(port, host):
            port = free_port(host)
            while port in chosen.values():
                port = free_port(host)
        chosen[name] = port
    return chosen
