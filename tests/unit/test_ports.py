"""A worker's ports: a taken default moves to the next free port, a taken explicit port is
one sentence. Real sockets hold the ports, as another worker would."""

import contextlib
import errno
import socket
from collections.abc import Iterator

import pytest

from streams.http.ports import PortError, choose_ports
from streams.settings import Settings
from tests.ports import free_port, free_ports

DEFAULT_METRICS = Settings.model_fields["metrics_port"].default
DEFAULT_API = Settings.model_fields["api_port"].default


@contextlib.contextmanager
def held(*ports: int) -> Iterator[None]:
    """Listen on 127.0.0.1:`port`s, as a running worker does (a port another process
    already holds is just as taken)."""
    with contextlib.ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket())
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as err:
                assert err.errno == errno.EADDRINUSE
                continue
            sock.listen()
        yield


def free_now(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture
def defaults(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings that leave both ports at their defaults."""
    monkeypatch.delenv("RIVERRUN_METRICS_PORT", raising=False)
    monkeypatch.delenv("RIVERRUN_API_PORT", raising=False)
    return Settings()


def test_taken_defaults_move_to_the_next_free_ports_and_the_url_says_so(
    defaults: Settings,
) -> None:
    with held(DEFAULT_METRICS, DEFAULT_API):
        chosen = choose_ports(defaults)
        metrics, api = chosen.settings.metrics_port, chosen.settings.api_port
        # Past the defaults, each free, not each other's.
        assert DEFAULT_API < metrics < api <= DEFAULT_METRICS + 100
        assert free_now(metrics) and free_now(api)
        assert all(not free_now(p) for p in range(DEFAULT_METRICS, metrics) if p != DEFAULT_API)
    assert chosen.settings.api_url == f"http://127.0.0.1:{api}"  # what the group is told
    assert chosen.line == (
        f"listening: /metrics on http://127.0.0.1:{metrics}/metrics, /v1 on "
        f"http://127.0.0.1:{api}/v1 (/metrics on {metrics}: RIVERRUN_METRICS_PORT is unset "
        f"and {DEFAULT_METRICS} is taken) (/v1 on {api}: RIVERRUN_API_PORT is unset and "
        f"{DEFAULT_API} is taken)"
    )


def test_free_ports_are_kept() -> None:
    metrics, api = free_ports(2)
    explicit = Settings(metrics_port=metrics, api_port=api)
    assert choose_ports(explicit).settings == explicit


def test_a_taken_explicit_port_is_one_sentence() -> None:
    port = free_port()
    with held(port):
        with pytest.raises(PortError) as err:
            choose_ports(Settings(metrics_port=port, api_port=free_port()))
        assert str(err.value) == (
            f"RIVERRUN_METRICS_PORT is {port}, which another process listens on at 127.0.0.1 "
            "(another worker?): set it to a free port, or unset it to have the next free one "
            "chosen"
        )
        with pytest.raises(PortError, match=f"^RIVERRUN_API_PORT is {port}, which"):
            choose_ports(Settings(api_port=port, metrics_port=free_port()))
        # Without the API, its port is not looked at.
        choose_ports(Settings(api_port=port, metrics_port=free_port(), api_enabled=False))


def test_an_advertised_url_keeps_the_api_port_it_names(defaults: Settings) -> None:
    advertised = defaults.model_copy(update={"api_advertised_url": "http://w1:9465"})
    with held(DEFAULT_API), pytest.raises(PortError, match="RIVERRUN_API_ADVERTISED_URL"):
        choose_ports(advertised)


def test_port_0_is_any_free_port() -> None:
    chosen = choose_ports(Settings(metrics_port=0, api_port=0)).settings
    assert 0 not in (chosen.metrics_port, chosen.api_port)
    assert chosen.metrics_port != chosen.api_port
    assert chosen.api_url.endswith(f":{chosen.api_port}")


def test_an_address_not_of_this_machine_is_one_sentence() -> None:
    with pytest.raises(PortError, match="check RIVERRUN_METRICS_HOST"):
        choose_ports(Settings(metrics_host="192.0.2.1", metrics_port=free_port()))
