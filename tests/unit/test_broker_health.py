"""The broker outage's state and the clients' quieted log, on a clock the test moves."""

import logging

from streams.kafka.broker_health import (
    CLIENT_LOG_WINDOW_SECONDS,
    SUMMARY_SECONDS,
    SYMPTOM_GRACE_SECONDS,
    BrokerHealth,
    QuietClients,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(name: str, level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def unreachable(node: int = 1) -> logging.LogRecord:
    """What aiokafka logs on every attempt to reach a stopped broker (hundreds a second)."""
    return record(
        "aiokafka.client",
        logging.ERROR,
        "Unable connect to node with id %s: %s",
        node,
        OSError(111, "Connect call failed ('127.0.0.1', 9092)"),
    )


def test_an_outage_is_one_line_a_summary_every_30_s_and_one_line_at_its_end() -> None:
    clock = Clock()
    health = BrokerHealth("kafka:9092", clock=clock)
    assert health.answered() is None  # no outage: nothing to say
    assert health.describe() == {"reachable": True, "outages": 0}
    start = health.failed("KafkaConnectionError: Connection refused")
    assert start is not None and "kafka:9092 is unreachable (KafkaConnectionError" in start
    lines = []
    for _ in range(90):  # 90 s of failed probes, one a second
        clock.now += 1
        assert health.failed("KafkaConnectionError: Connection refused") is None
        health.held_back()
        lines.append(health.summary())
    summaries = [line for line in lines if line]
    assert len(summaries) == 90 // SUMMARY_SECONDS  # at 30, 60 and 90 s
    assert "unreachable for 30 s now" in summaries[0] and "60 client log line(s)" in summaries[1]
    health.refused_events()
    described = health.describe()
    assert described["reachable"] is False and described["seconds"] == 90.0
    assert described["refused_events"] == 1 and described["held_back_lines"] == 90
    assert described["since"].endswith("Z")
    end = health.answered()
    assert end is not None and "after an outage of 90 s" in end
    assert "1 /v1/events request(s) refused, 90 client log line(s) held back" in end
    assert health.reachable and health.seconds() == 0.0 and health.summary() is None
    assert health.describe() == {"reachable": True, "outages": 1}


def test_the_outage_names_the_clients_reason_when_they_saw_one() -> None:
    clock = Clock()
    health = BrokerHealth("kafka:9092", clock=clock)
    QuietClients(health).filter(unreachable())
    clock.now += 0.5
    line = health.failed("NodeNotReadyError: Attempt to send a request to node")
    assert line is not None and "Connect call failed" in line
    assert "Connect call failed" in health.describe()["error"]


def test_an_outages_retry_errors_are_held_back_and_counted() -> None:
    clock = Clock()
    probed = []
    health = BrokerHealth("kafka:9092", clock=clock, on_suspect=lambda: probed.append(clock.now))
    quiet = QuietClients(health)
    # Before the probe confirms the outage: the symptoms wake the probe, none is logged.
    assert not any(quiet.filter(unreachable()) for _ in range(500))
    assert probed  # the probe was woken at once
    health.failed("NodeNotReadyError")
    woken = len(probed)
    passed = 0
    for _ in range(40):  # 40 s of outage at 200 lines a second, of several kinds
        clock.now += 1
        for i in range(200):
            passed += quiet.filter(unreachable(i % 3))
            passed += quiet.filter(
                record(
                    "aiokafka.producer.sender",
                    logging.WARNING,
                    "Got error produce response: %s",
                    "NodeNotReadyError",
                )
            )
    assert passed == 0 and health.describe()["held_back_lines"] == 40 * 400
    assert len(probed) == woken  # during a known outage the probe keeps its own pace
    # Not the clients' records: the worker's own lines, and any INFO, always pass.
    assert quiet.filter(record("streams.kafka.broker_health", logging.WARNING, "summary"))
    assert quiet.filter(
        record(
            "aiokafka.consumer.group_coordinator",
            logging.INFO,
            "Discovered coordinator 1 for group g",
        )
    )
    health.answered()
    # After the outage a symptom starts afresh: held back within the grace.
    assert not quiet.filter(unreachable())


def test_a_new_groups_coordinator_noise_is_held_back_while_the_broker_answers() -> None:
    clock = Clock()
    health = BrokerHealth("kafka:9092", clock=clock)
    quiet = QuietClients(health)
    noise = [
        record(
            "aiokafka.consumer.group_coordinator",
            logging.ERROR,
            "Group Coordinator Request failed: %s",
            "[Error 15] GroupCoordinatorNotAvailableError",
        ),
        *[
            record(
                "aiokafka.consumer.group_coordinator",
                logging.WARNING,
                "Marking the coordinator dead (node %s)for group %s.",
                1,
                "g-app",
            )
        ]
        * 5,
    ]
    for item in noise:
        clock.now += 0.1
        assert not quiet.filter(item)
    assert health.reachable and health.describe()["outages"] == 0


def test_a_symptom_that_persists_while_the_broker_answers_is_logged_once_a_minute() -> None:
    clock = Clock()
    quiet = QuietClients(BrokerHealth("kafka:9092", clock=clock))
    passed = []
    rate = 8  # records a second (a step of 1/8 s adds up exactly)
    for _ in range(int(SYMPTOM_GRACE_SECONDS + 2 * CLIENT_LOG_WINDOW_SECONDS + 1) * rate):
        clock.now += 1 / rate
        item = unreachable()
        if quiet.filter(item):
            passed.append((clock.now, item.getMessage()))
    # Once after the grace, then once per window, each saying how many were held back.
    assert [at - 1000 - 1 / rate for at, _ in passed] == [
        SYMPTOM_GRACE_SECONDS,
        SYMPTOM_GRACE_SECONDS + CLIENT_LOG_WINDOW_SECONDS,
        SYMPTOM_GRACE_SECONDS + 2 * CLIENT_LOG_WINDOW_SECONDS,
    ]
    assert "Connect call failed" in passed[0][1]
    assert passed[0][1].endswith(f"({int(SYMPTOM_GRACE_SECONDS) * rate} more like it held back)")
    held = int(CLIENT_LOG_WINDOW_SECONDS) * rate - 1  # all in the window but the one let through
    assert passed[1][1].endswith(f"({held} more like it held back)")


def test_any_other_client_warning_is_logged_once_a_window() -> None:
    clock = Clock()
    quiet = QuietClients(BrokerHealth("kafka:9092", clock=clock))

    def warning() -> logging.LogRecord:
        return record("faust.transport.consumer", logging.WARNING, "Topic %s is not ready", "x")

    assert quiet.filter(warning())  # the first at once
    clock.now += 1
    assert not quiet.filter(warning())
    clock.now += CLIENT_LOG_WINDOW_SECONDS
    again = warning()
    assert quiet.filter(again) and again.getMessage().endswith("(1 more like it held back)")
    # Formatted as the worker's handlers do (mode's formatter wraps args that are not a
    # tuple: None became (None,), and the line a "--- Logging error ---").
    assert isinstance(again.args, tuple) and again.getMessage() == again.msg


def test_a_warning_every_few_seconds_is_still_logged_once_a_window() -> None:
    clock = Clock()
    quiet = QuietClients(BrokerHealth("kafka:9092", clock=clock))
    passed = 0
    for _ in range(int(CLIENT_LOG_WINDOW_SECONDS) // 6 * 2):  # one every 6 s for two windows
        clock.now += 6
        passed += quiet.filter(record("aiokafka.consumer.fetcher", logging.WARNING, "odd"))
    assert passed == 2


def test_a_stop_during_an_outage_says_what_it_waits_for() -> None:
    clock = Clock()
    health = BrokerHealth("kafka:9092", clock=clock)
    assert health.stopping() is None  # a normal stop says nothing more
    health.failed("KafkaConnectionError")
    clock.now += 12
    line = health.stopping()
    assert line is not None and line.startswith("stopping during a broker outage (12 s so far)")
    assert "kill the worker not to wait" in line
