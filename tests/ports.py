"""Free local ports for the tests' brokers and web servers.

They are chosen below the ephemeral range the system gives outgoing connections (32768 and
up on Linux): a port a test picks now and a worker binds seconds later could otherwise be
taken meanwhile by any client connection (a producer's, a consumer's), which once made a
worker fail to bind its API port.
"""

import random
import socket

#: Where the tests' ports come from: above the local broker's (19092) and below the
#: ephemeral range.
PORTS = range(20_000, 32_768)
_random = random.SystemRandom()


def free_port() -> int:
    """A port free now on 127.0.0.1."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free now on 127.0.0.1 (each socket is held open until all
    are chosen, so that none is chosen twice)."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            s = _bound(_random.choice(PORTS))
            if s is not None:
                sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_pair() -> int:
    """A port p such that p and p + 1 are both free now (a broker and its controller)."""
    for _ in range(200):
        port = _random.choice(PORTS[:-1])
        first = _bound(port)
        if first is None:
            continue
        with first:
            second = _bound(port + 1)
            if second is None:
                continue
            second.close()
        return port
    raise RuntimeError("no two adjacent free ports")


def _bound(port: int) -> socket.socket | None:
    """A socket bound to `port` on 127.0.0.1, or None when it is taken."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        s.close()
        return None
    return s
