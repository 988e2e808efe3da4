"""`riverrun models` and `riverrun experiments` on a cluster where no worker has run yet
(no control topic): each says so in a sentence, the changes create the compacted control
topic as a worker would, and the worker started afterwards follows the plan written."""

import subprocess
import time
import uuid
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from streams.runtime.control import read_control
from tests.builtin import MODELS
from tests.integration.conftest import riverrun_cli as cli


def without_control_topic(make_env: Any) -> Any:
    """A fresh env whose control topic does not exist (as before a first worker)."""
    env = make_env(models=["logreg"], status_every_seconds=0.5)
    admin = KafkaAdminClient(**env.client_options())
    try:
        admin.delete_topics([env.settings.control_topic])  # the one make_env created
    finally:
        admin.close()
    fresh = f"t-{uuid.uuid4().hex[:10]}-control"
    env.settings = env.settings.model_copy(update={"control_topic": fresh})
    env.env["RIVERRUN_CONTROL_TOPIC"] = fresh
    return env


def topics(env: Any) -> set[str]:
    admin = KafkaAdminClient(**env.client_options())
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def succeeded(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def test_reading_before_any_worker_says_there_is_nothing_yet(make_env: Any) -> None:
    env = without_control_topic(make_env)
    listed = succeeded(cli(env, "models", "list"))
    assert listed.splitlines() == [
        f"logreg: {MODELS['logreg'].version} is the champion (the app's version); no plan",
        "no worker has published a status yet: start one with `riverrun worker`",
    ]
    assert succeeded(cli(env, "experiments", "status")) == "no experiment or bandit is running\n"
    assert succeeded(cli(env, "models", "gate", "logreg")).startswith(
        "logreg: gate min_labelled 1000, delta 0, auto-promote off"
    )
    # Reading creates nothing (the topic is created, compacted, by the first change).
    assert env.settings.control_topic not in topics(env)


def test_changes_before_any_worker_create_the_topic_and_the_worker_follows_them(
    make_env: Any,
) -> None:
    env = without_control_topic(make_env)
    gated = succeeded(cli(env, "models", "gate", "logreg", "--min-labelled", "50"))
    assert gated.splitlines()[-1].endswith("(revision 2)")
    admin = KafkaAdminClient(**env.client_options())
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, env.settings.control_topic)
        configs = admin.describe_configs([resource])["topic"][env.settings.control_topic]
    finally:
        admin.close()
    assert configs["cleanup.policy"]["value"] == "compact"  # as the worker creates it
    shadow = MODELS["logreg"].with_params(lr=0.1).version
    deployed = succeeded(cli(env, "models", "deploy", "logreg", "--params", '{"lr": 0.1}'))
    assert deployed == f"logreg: deployed {shadow} as shadow (revision 3)\n"

    env.start_worker()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        statuses = read_control(env.settings).statuses_of("logreg")
        if statuses and all(s.revision == 3 for s in statuses):
            break
        env.workers[0].assert_alive()
        time.sleep(0.5)
    else:
        raise AssertionError(f"the worker never applied revision 3:\n{env.workers[0].tail()}")
    assert {v.version for s in statuses for v in s.versions} == {
        MODELS["logreg"].version,
        shadow,
    }
    listed = succeeded(cli(env, "models", "list", "logreg"))
    assert "partition(s) reporting, all at revision 3" in listed
