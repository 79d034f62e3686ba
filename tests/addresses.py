"""This machine's own address, for tests that reach a server the way another machine would
(the kubelet and Prometheus reach a pod on the pod's address, not on its loopback)."""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["own_address"]

#: Documentation addresses (RFC 5737, RFC 3849): routed like any other, never answered.
_ELSEWHERE = {socket.AF_INET: "192.0.2.1", socket.AF_INET6: "2001:db8::1"}


def own_address(family: socket.AddressFamily = socket.AF_INET) -> str | None:
    """An address of this machine that is not loopback: the one its route to elsewhere
    leaves from (a UDP connect only picks the route; it sends nothing), else one its host
    name resolves to; None when it has neither."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((_ELSEWHERE[family], 9))
            candidates = [str(sock.getsockname()[0])]
    except OSError:
        candidates = []
    try:
        found = socket.getaddrinfo(socket.gethostname(), None, family, socket.SOCK_STREAM)
    except OSError:
        found = []
    candidates += [str(info[4][0]) for info in found]
    for address in candidates:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            return address
    return None
