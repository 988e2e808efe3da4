"""How riverrun waits for a schema registry that does not answer
(`streams.http.schema_registry.until_answered`): the records' schemas and the
predictions' registration both wait so."""

import asyncio
import logging

import pytest

from streams.http.schema_registry import RETRY_SECONDS, RegistryUnavailable, until_answered

URL = "http://registry:8081"


def test_the_registry_is_asked_again_after_growing_waits_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answers: list[int | RegistryUnavailable] = [RegistryUnavailable("answered 503")] * 6 + [7]
    waits: list[float] = []
    failures: list[int] = []

    async def ask() -> int:
        answer = answers.pop(0)
        if isinstance(answer, RegistryUnavailable):
            raise answer
        return answer

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with caplog.at_level(logging.INFO):
        got = asyncio.run(
            until_answered(
                ask,
                URL,
                waiting="the test waits",
                on_unavailable=lambda: failures.append(1),
                sleep=sleep,
            )
        )
    assert got == 7
    assert waits == [*RETRY_SECONDS, RETRY_SECONDS[-1], RETRY_SECONDS[-1]]
    assert len(failures) == 6
    # Six failures within a second: one warning (the next would come 30 s later).
    assert [r.getMessage() for r in caplog.records] == [
        f"the schema registry at {URL} is unavailable (answered 503): the test waits",
        f"the schema registry at {URL} answers again",
    ]


def test_the_wait_ends_when_it_is_abandoned() -> None:
    asked: list[int] = []

    async def ask() -> int:
        asked.append(1)
        raise RegistryUnavailable("connection refused")

    async def sleep(seconds: float) -> None:
        pass

    got = asyncio.run(
        until_answered(ask, URL, waiting="-", abandon=lambda: len(asked) == 3, sleep=sleep)
    )
    assert got is None and len(asked) == 3


def test_an_answer_at_once_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def ask() -> str:
        return "schema"

    with caplog.at_level(logging.INFO):
        assert asyncio.run(until_answered(ask, URL, waiting="-")) == "schema"
    assert caplog.records == []
