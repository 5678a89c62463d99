"""Whether the API may listen where it is told to: open to the network only on purpose.

A key-less API on a loopback address is reachable from this machine only; anywhere else
(0.0.0.0 in a container, a pod IP, a host name) it would answer anyone who reaches the
port with every user's data, so it needs `LIFECYCLE_API_KEY`, or
`LIFECYCLE_API_INSECURE=true` for a network that is private by other means.
"""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and the local host names; a name that DNS may
    resolve anywhere else is not loopback."""
    name = host.strip().lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name.removeprefix("[").removesuffix("]")).is_loopback
    except ValueError:
        return False


def exposure(host: str, has_key: bool, insecure: bool) -> tuple[str | None, str | None]:
    """(refusal, warning) for serving the API on `host`: at most one of them is set."""
    if has_key or is_loopback(host):
        return None, None
    if insecure:
        return None, (
            f"lifecycle: warning: the API on {host} has no key (LIFECYCLE_API_INSECURE=true): "
            "anyone who reaches the port reads every user's data"
        )
    return (
        f"lifecycle: refusing to serve the API on {host} without a key: set LIFECYCLE_API_KEY "
        "(clients send it as a Bearer token), listen on 127.0.0.1, or set LIFECYCLE_API_INSECURE=true "
        "if the network is private by other means"
    ), None
