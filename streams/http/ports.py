"""The ports a worker listens on (/metrics and /v1), chosen before it starts.

A port set explicitly (RIVERRUN_METRICS_PORT, RIVERRUN_API_PORT) is used as it is, and
refused with one sentence when another process holds it. A port left at its default is
moved to the next free one when the default is taken — a second worker on the same
machine — and the settings passed on carry the port chosen, so the /v1 URL advertised to
the group names it. 0 asks for any free port.

Choosing is a check before binding (the servers bind a moment later), so two workers
started in the same instant can still meet on one port: the later one then stops.
"""

import errno
import socket
from dataclasses import dataclass

from streams.settings import Settings, env_name

#: How far past a taken default the next free port is looked for (then: any free port).
SEARCH = 100


class PortError(Exception):
    """A port a worker cannot listen on (the message is one sentence)."""


@dataclass(frozen=True)
class Chosen:
    """The settings with the ports chosen, and a line saying where each server listens."""

    settings: Settings
    line: str


def choose_ports(settings: Settings) -> Chosen:
    """The ports of `settings`, a taken default replaced by the next free port.

    Raises PortError when a port set explicitly is taken (or cannot be bound at all)."""
    avoid = {settings.kafka_port, settings.kafka_port + 1} if settings.uses_local_broker else set()
    servers = [("metrics_port", settings.metrics_host, "/metrics")]
    if settings.api_enabled:
        servers.append(("api_port", settings.api_host, "/v1"))
    updates: dict[str, int] = {}
    notes: list[str] = []
    for field, host, what in servers:
        wanted = getattr(settings, field)
        explicit = field in settings.model_fields_set
        if wanted == 0:
            port = _any_free(host, field)
        elif wanted not in avoid and _free(host, wanted, field):
            port = wanted
        elif explicit:
            raise PortError(
                f"{env_name(field)} is {wanted}, which another process listens on at {host} "
                "(another worker?): set it to a free port, or unset it to have the next free "
                "one chosen"
            )
        elif field == "api_port" and settings.api_advertised_url:
            raise PortError(
                f"RIVERRUN_API_PORT's default {wanted} is taken at {host} and "
                f"RIVERRUN_API_ADVERTISED_URL ({settings.api_advertised_url}) names the port "
                "the group reaches this worker on: set RIVERRUN_API_PORT to that port, free"
            )
        else:
            port = _next_free(host, wanted, avoid, field)
            notes.append(f"{what} on {port}: {env_name(field)} is unset and {wanted} is taken")
        avoid.add(port)
        updates[field] = port
    chosen = settings.model_copy(update=updates) if updates else settings
    urls = [f"/metrics on http://{_shown(settings.metrics_host)}:{chosen.metrics_port}/metrics"]
    if settings.api_enabled:
        urls.append(f"/v1 on {chosen.api_url}/v1")
    line = "listening: " + ", ".join(urls) + "".join(f" ({note})" for note in notes)
    return Chosen(chosen, line)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _free(host: str, port: int, field: str) -> bool:
    return _bind(host, port, field) is not None


def _any_free(host: str, field: str) -> int:
    """A port the system has free now."""
    port = _bind(host, 0, field)
    assert port is not None  # the system chooses among the free ones
    return port


def _next_free(host: str, taken: int, avoid: set[int], field: str) -> int:
    for port in range(taken + 1, min(taken + SEARCH, 65535) + 1):
        if port not in avoid and _free(host, port, field):
            return port
    return _any_free(host, field)


def _bind(host: str, port: int, field: str) -> int | None:
    """The port a server could listen on at host:port now (None: another process holds
    it), bound as aiohttp binds: with SO_REUSEADDR, so a port that only closed
    connections still wait on counts as free."""
    try:
        info = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = info[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            bound: int = probe.getsockname()[1]
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return None
        host_field = field.replace("_port", "_host")
        raise PortError(
            f"cannot listen on {host}:{port} ({err.strerror or err}): check "
            f"{env_name(host_field)} (an address of this machine) and {env_name(field)}"
        ) from None
    return bound
