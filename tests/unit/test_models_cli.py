"""`riverrun models` and `riverrun experiments` without a broker: the control topic is a
ControlState in memory (what is written is signed and read back, as on Kafka), so each
command is checked on the plan it writes, what it prints, and the sentence it exits with
when the change cannot apply."""

import json
import math
import statistics
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner, Result
from scipy import stats

from online_models.versions.experiments import SEQUENTIAL_BURN_IN, ArmOutcomes, ExperimentDesign
from online_models.versions.plans import initial_plan, sign, stop_diverged
from schemas.control import (
    ArmStatus,
    ComparisonResult,
    ExperimentResult,
    ModelPlan,
    ModelStatus,
    VersionStatus,
)
from streams.cli import experiments as experiments_cli
from streams.cli import models as models_cli
from streams.cli import models_render, options
from streams.cli import plan_edits as lifecycle_cli
from streams.cli.main import main
from streams.runtime.control import ControlState
from streams.settings import Settings
from tests.builtin import MODELS

KEY = "test-key"
APP = ["--app", "riverrun.builtin:app"]
CHAMPION = MODELS["logreg"].version  # the built-in app serves logreg with its defaults
SHADOW = MODELS["logreg"].with_params(lr=0.1).version
NOW = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


@dataclass
class Topic:
    """The control topic in memory: written plans are signed and read back."""

    state: ControlState = field(default_factory=ControlState)
    written: list[ModelPlan | ModelStatus] = field(default_factory=list)
    reads: int = 0
    ensured: list[list[str]] = field(default_factory=list)

    def read(self, settings: Settings) -> ControlState:
        self.reads += 1
        return self.state

    def write(self, settings: Settings | None, messages: Iterable[ModelPlan | ModelStatus]) -> None:
        """Stands in for the control topic's write; a test writing directly passes None."""
        for message in messages:
            self.written.append(message)
            signed = sign(message, KEY.encode())
            self.state.add(signed.model_dump_json().encode(), KEY.encode())

    def plan(self) -> ModelPlan:
        return self.state.plans["logreg"]

    def report(self, partition: int, *versions: VersionStatus, **fields: object) -> None:
        """A worker's status of logreg on `partition`, of the plan's current revision."""
        self.state.statuses["logreg", partition] = ModelStatus.model_validate(
            {
                "model": "logreg",
                "partition": partition,
                "revision": self.plan().revision,
                "offset": 0,
                "versions": list(versions),
                "at": NOW,
                **fields,
            }
        )


@pytest.fixture
def topic(clean_environment: pytest.MonkeyPatch) -> Iterator[Topic]:
    monkeypatch = clean_environment
    monkeypatch.setenv("RIVERRUN_CHECKPOINT_KEY", KEY)
    fake = Topic()
    monkeypatch.setattr(lifecycle_cli, "read_control", fake.read)
    monkeypatch.setattr(lifecycle_cli, "write_control", fake.write)
    monkeypatch.setattr(
        lifecycle_cli, "ensure_topics", lambda settings, names: fake.ensured.append(list(names))
    )
    for commands in (models_cli, experiments_cli):
        monkeypatch.setattr(commands, "require_broker", lambda settings: None)
    yield fake


def run(*args: str) -> Result:
    return CliRunner().invoke(main, [*args, *APP])


def ok(*args: str) -> Result:
    done = run(*args)
    assert done.exit_code == 0, done.output
    return done


def refused(*args: str) -> Result:
    done = run(*args)
    assert done.exit_code == 1, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    return done


def scored(version: str, labelled: int, loss: float, champion_loss: float) -> VersionStatus:
    return VersionStatus(
        version=version,
        role="shadow",
        learning=True,
        updates=labelled,
        labelled=labelled,
        loss=loss,
        champion_loss=champion_loss,
        served=0,
        headline={"logloss": loss},
    )


def deploy_shadow(topic: Topic) -> None:
    ok("models", "deploy", "logreg", "--params", '{"lr": 0.1}')


# --- deploy ----------------------------------------------------------------------------
def test_deploy_publishes_the_initial_plan_with_the_new_shadow(topic: Topic) -> None:
    done = ok("models", "deploy", "logreg", "--params", '{"lr": 0.1}')
    assert done.output.splitlines() == [
        f"logreg: {CHAMPION} is the champion (the app's version) (revision 1)",
        f"logreg: deployed {SHADOW} as shadow (revision 2)",
    ]
    first, second = topic.written
    assert isinstance(first, ModelPlan) and isinstance(second, ModelPlan)
    assert [(v.version, v.role) for v in first.versions] == [(CHAMPION, "champion")]
    shadow = second.versions[1]
    # The params are merged over the app's served ones (l2 from the app, lr given).
    assert (shadow.version, shadow.role, shadow.params) == (
        SHADOW,
        "shadow",
        {"lr": 0.1, "l2": 0.0},
    )
    assert shadow.joined_revision == 2 and second.changed_by == "cli"
    assert topic.ensured == [["control"]]  # created compacted, if missing


def test_a_second_deploy_starts_from_the_plan_on_the_topic(topic: Topic) -> None:
    deploy_shadow(topic)
    done = ok(
        "models",
        "deploy",
        "logreg",
        "--params",
        '{"lr": 0.2}',
        "--role",
        "canary",
        "--share",
        "0.25",
    )
    canary = MODELS["logreg"].with_params(lr=0.2).version
    assert done.output == f"logreg: deployed {canary} as canary (0.25 of keys) (revision 3)\n"
    assert [(v.role, v.share) for v in topic.plan().versions] == [
        ("champion", 0.0),
        ("shadow", 0.0),
        ("canary", 0.25),
    ]


def test_deploying_the_same_version_twice_is_refused(topic: Topic) -> None:
    deploy_shadow(topic)
    done = refused("models", "deploy", "logreg", "--params", '{"lr": 0.1}')
    assert f"{SHADOW} is deployed already" in done.output
    assert len(topic.written) == 2  # nothing more


def test_backfill_time_without_a_zone_is_utc(topic: Topic) -> None:
    ok(
        "models",
        "deploy",
        "logreg",
        "--params",
        '{"lr": 0.1}',
        "--backfill-from",
        "2026-01-01T00:00",
    )
    assert topic.plan().versions[1].backfill_from == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--params", "{lr: 0.1}"], "is not JSON"),
        (["--params", "[0.1]"], "is not a JSON object"),
        (["--params", '{"lr": 0.1}', "--backfill-from", "yesterday"], "is not an ISO-8601 time"),
        (["--params", '{"lr": 0.1}', "--share", "0.2"], "only a canary serves a share"),
    ],
)
def test_bad_deploy_arguments_are_refused_before_reading_the_topic(
    topic: Topic, args: list[str], says: str
) -> None:
    done = run("models", "deploy", "logreg", *args)
    assert done.exit_code == 2, done.output  # a usage error
    assert says in done.output
    assert topic.reads == 0 and topic.written == []


def test_params_the_factory_does_not_take_are_refused(topic: Topic) -> None:
    done = refused("models", "deploy", "logreg", "--params", '{"learning_rate": 0.1}')
    assert "cannot be built with parameters" in done.output
    assert topic.written == []


def test_a_canary_without_a_share_is_refused_with_the_option_to_pass(topic: Topic) -> None:
    done = refused("models", "deploy", "logreg", "--params", '{"lr": 0.1}', "--role", "canary")
    assert "pass --share" in done.output and topic.written == []


def test_an_unknown_model_is_refused_with_the_closest_name(topic: Topic) -> None:
    done = refused("models", "deploy", "logrg", "--params", "{}")
    assert "the app serves no model 'logrg' (did you mean 'logreg'?" in done.output


# --- promote, rollback, retire ---------------------------------------------------------
def test_promoting_before_the_gate_passed_is_refused_with_the_gates_count(topic: Topic) -> None:
    deploy_shadow(topic)
    topic.report(0, scored(SHADOW, 400, 0.3, 0.4))
    done = refused("models", "promote", f"logreg@{SHADOW}")
    assert (
        "scored on 400 labelled events since it became shadow at revision 2 (the gate counts "
        "each role afresh); the gate needs 1000"
    ) in done.output
    assert len(topic.written) == 2


def test_promoting_a_new_canary_says_what_its_count_starts_from(topic: Topic) -> None:
    deploy_shadow(topic)
    topic.report(0, scored(SHADOW, 1000, 0.3, 0.4))
    topic.report(1, scored(SHADOW, 1000, 0.3, 0.4))
    ok("models", "promote", f"logreg@{SHADOW}")  # to canary, at revision 3
    # Right after, the partitions still report revision 2 (their shadow figures): the
    # canary's count is 0, because it starts again at the promotion, not at its deploy.
    done = refused("models", "promote", f"logreg@{SHADOW}")
    assert (
        f"{SHADOW} was scored on 0 labelled events since it became canary at revision 3 (the "
        "gate counts each role afresh; partition(s) 0, 1 not yet at that revision); the gate "
        "needs 1000: wait, or lower it"
    ) in done.output
    assert "since it joined" not in done.output


def test_promoting_a_worse_version_is_refused(topic: Topic) -> None:
    deploy_shadow(topic)
    topic.report(0, scored(SHADOW, 1000, 0.5, 0.4))
    done = refused("models", "promote", f"logreg@{SHADOW}")
    assert "is worse than the champion's 0.4" in done.output


def test_promote_goes_shadow_canary_champion_on_the_partitions_summed(topic: Topic) -> None:
    deploy_shadow(topic)
    # 600 + 600 labelled events over two partitions: past the gate's 1000 together.
    topic.report(0, scored(SHADOW, 600, 0.3, 0.4))
    topic.report(1, scored(SHADOW, 600, 0.3, 0.4))
    hash_only = SHADOW.partition("@")[2]
    done = ok("models", "promote", f"logreg@{hash_only}")
    assert done.output.startswith(f"logreg: promoted {SHADOW} to canary (0.1 of keys)")
    assert done.output.rstrip().endswith("(revision 3)")
    # The canary's role changed at revision 3: the gate counts from there only.
    refused("models", "promote", f"logreg@{SHADOW}")
    topic.report(0, scored(SHADOW, 1000, 0.3, 0.4))
    done = ok("models", "promote", f"logreg@{SHADOW}")
    assert f"promoted {SHADOW} to champion ({CHAMPION} stays in shadow)" in done.output
    plan = topic.plan()
    assert [(v.version, v.role) for v in plan.versions] == [
        (CHAMPION, "shadow"),
        (SHADOW, "champion"),
    ]
    assert plan.previous_champions == [CHAMPION]

    done = ok("models", "rollback", "logreg", "--reason", "clicks fell")
    assert done.output == (
        f"logreg: rolled back from {SHADOW} to {CHAMPION} (clicks fell) (revision 5)\n"
    )
    assert [(v.version, v.role) for v in topic.plan().versions] == [
        (CHAMPION, "champion"),
        (SHADOW, "shadow"),
    ]


def test_rolling_back_without_a_previous_champion_is_refused(topic: Topic) -> None:
    done = refused("models", "rollback", "logreg")
    assert "logreg has no previous champion left to roll back to" in done.output
    assert topic.written == []  # not even the initial plan


def test_retire_removes_a_shadow_and_refuses_the_champion(topic: Topic) -> None:
    deploy_shadow(topic)
    done = refused("models", "retire", f"logreg@{CHAMPION}")
    assert "is the champion: promote another version or roll back" in done.output
    done = ok("models", "retire", f"logreg@{SHADOW}")
    assert done.output == f"logreg: retired {SHADOW} (revision 3)\n"
    assert [v.version for v in topic.plan().versions] == [CHAMPION]


def test_a_version_the_plan_does_not_have_is_refused_with_those_it_has(topic: Topic) -> None:
    deploy_shadow(topic)
    done = refused("models", "promote", "logreg@deadbeef")
    assert (
        f"logreg has no version 'deadbeef' (it has: {CHAMPION} (champion), {SHADOW} (shadow))"
        in done.output
    )


def test_a_target_without_a_version_is_a_usage_error(topic: Topic) -> None:
    done = run("models", "promote", "logreg")
    assert done.exit_code == 2 and "names no version; pass NAME@VERSION" in done.output


# --- learning and the gate -------------------------------------------------------------
def test_pause_and_resume_learning_of_one_or_every_version(topic: Topic) -> None:
    deploy_shadow(topic)
    done = ok("models", "pause-learning", "logreg", "--reason", "label outage")
    assert done.output == (
        f"logreg: paused learning of {', '.join(sorted([CHAMPION, SHADOW]))} (label outage) "
        "(revision 3)\n"
    )
    assert [(v.learning, v.paused_reason) for v in topic.plan().versions] == [
        (False, "label outage")
    ] * 2
    ok("models", "resume-learning", f"logreg@{SHADOW}")
    assert [v.learning for v in topic.plan().versions] == [False, True]
    done = refused("models", "resume-learning", f"logreg@{SHADOW}")
    assert "is learning already" in done.output


def test_gate_changes_only_the_options_given(topic: Topic) -> None:
    done = ok("models", "gate", "logreg", "--min-labelled", "50", "--auto-promote")
    assert done.output.splitlines()[-1].endswith("(revision 2)")
    gate = topic.plan().gate
    assert (gate.min_labelled, gate.delta, gate.auto_promote, gate.canary_share) == (
        50,
        0.0,
        True,
        0.1,
    )
    done = refused("models", "gate", "logreg", "--min-labelled", "50")
    assert "the gate of logreg is min_labelled 50" in done.output and "already" in done.output
    done = refused("models", "gate", "logreg", "--canary-share", "2")
    assert "not a gate: canary_share" in done.output
    done = ok("models", "gate", "logreg")  # no option: print it
    assert done.output == (
        "logreg: gate min_labelled 50, delta 0, auto-promote on, canary share 0.1 "
        "(pass an option to change it)\n"
    )


# --- list --------------------------------------------------------------------------------
def test_list_without_plans_says_the_apps_version_is_the_champion(topic: Topic) -> None:
    done = ok("models", "list", "logreg")
    assert done.output.splitlines() == [
        f"logreg: {CHAMPION} is the champion (the app's version); no plan",
        "no worker has published a status yet: start one with `riverrun worker`",
    ]
    every = ok("models", "list").output.splitlines()
    # One line each, and the one line saying no worker reported.
    assert len(every) == len(options.served(*options.load("riverrun.builtin:app"))) + 1


def test_list_shows_each_version_with_its_figures_over_the_partitions(topic: Topic) -> None:
    deploy_shadow(topic)
    ok("models", "pause-learning", f"logreg@{SHADOW}", "--reason", "spike")
    champion = scored(CHAMPION, 0, 0.0, 0.0).model_copy(update={"role": "champion", "served": 70})
    topic.report(0, scored(SHADOW, 100, 0.2, 0.4), champion)
    topic.report(1, scored(SHADOW, 300, 0.4, 0.5))
    lines = ok("models", "list", "logreg").output.splitlines()
    assert lines[0].startswith("logreg: revision 3, ") and lines[0].endswith(
        f"by cli: paused learning of {SHADOW} (spike)"
    )
    header, first, second = (line.split("  ") for line in lines[1:4])
    cells = [[c.strip() for c in row if c.strip()] for row in (header, first, second)]
    assert cells[0][:9] == [
        "version",
        "role",
        "share",
        "learning",
        "labelled",
        "loss",
        "champion's",
        "served",
        "headline",
    ]
    assert cells[1][:8] == [CHAMPION, "champion", "-", "yes", "0", "-", "-", "70"]
    # 400 labelled: mean losses weighted by each partition's count, (100*.2 + 300*.4)/400.
    assert cells[2][:8] == [SHADOW, "shadow", "-", "paused (spike)", "400", "0.3500", "0.4750", "0"]
    assert cells[2][8] == "logloss 0.3500"
    assert cells[2][9] == 'params {"l2":0.0,"lr":0.1}, joined r2'
    assert f"  not past the gate: {SHADOW} was scored on 400 labelled events" in lines[4]
    assert lines[-1] == "  2 partition(s) reporting, all at revision 3"


def test_list_says_which_versions_the_apps_code_no_longer_builds(topic: Topic) -> None:
    deploy_shadow(topic)
    plan = topic.plan()
    stale = plan.versions[1].model_copy(update={"version": "logreg@0ld0c0de"})
    topic.state.plans["logreg"] = plan.model_copy(update={"versions": [plan.versions[0], stale]})
    out = ok("models", "list", "logreg").output
    assert (
        f"  cannot build logreg@0ld0c0de: the app's code builds {SHADOW} with these params, "
        "not logreg@0ld0c0de"
    ) in out
    assert f"cannot build {CHAMPION}" not in out


def test_list_shows_a_diverged_version_as_stopped_with_the_reason(topic: Topic) -> None:
    deploy_shadow(topic)
    why = (
        "diverged on event c300 (offset 300): model predicted nan; it predicts and learns "
        f"nothing more: retire it (`riverrun models retire {SHADOW}`)"
    )
    topic.write(None, [stop_diverged(topic.plan(), SHADOW, reason=why, changed_by="worker")])
    topic.report(0, scored(SHADOW, 400, 0.3, 0.4))
    lines = ok("models", "list", "logreg").output.splitlines()
    row = next(line for line in lines if line.strip().startswith(SHADOW))
    assert "stopped (diverged)" in row and " yes " not in row
    assert f"  stopped {SHADOW}: {why}" in lines
    assert not any("not past the gate" in line for line in lines)  # no gate note for it


def test_list_json_holds_the_plans_and_statuses(topic: Topic) -> None:
    deploy_shadow(topic)
    topic.report(0, scored(SHADOW, 10, 0.2, 0.4))
    shown = json.loads(ok("models", "list", "--json").output)
    assert shown["logreg"]["plan"]["revision"] == 2
    assert shown["logreg"]["statuses"][0]["versions"][0]["labelled"] == 10
    assert shown["linreg"] == {"plan": None, "statuses": []}


def test_refused_messages_on_the_topic_are_warned_about(topic: Topic) -> None:
    foreign = sign(initial_plan(MODELS["logreg"], changed_by="cli"), b"another-key")
    topic.state.add(foreign.model_dump_json().encode(), KEY.encode())
    done = ok("models", "list", "logreg")
    assert "warning: 1 control message(s) refused (bad_signature)" in done.stderr
    assert "warning" not in done.stdout


# --- experiments ---------------------------------------------------------------------------
def textbook_sample_size(rate: float, mde: float, alpha: float, power: float) -> int:
    """Per arm for two proportions with Cohen's h: 2 ((z_{1-alpha/2} + z_power) / h)^2
    (2 asin(sqrt(p)) has variance 1/n per arm, so the difference of two has 2/n)."""
    h = 2 * math.asin(math.sqrt(rate + mde)) - 2 * math.asin(math.sqrt(rate))
    return math.ceil(2 * ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / h) ** 2)


def start_ctr(topic: Topic, *extra: str, mde: str = "0.02") -> Result:
    deploy_shadow(topic)
    return ok(
        "experiments",
        "start",
        "logreg",
        "--arms",
        f"{CHAMPION},{SHADOW.partition('@')[2]}",
        "--metric",
        "ctr",
        "--mde",
        mde,
        "--baseline",
        "0.1",
        *extra,
    )


def test_start_prints_the_sample_size_up_front_and_writes_the_experiment(topic: Topic) -> None:
    done = start_ctr(topic)
    planned = textbook_sample_size(0.1, 0.02, 0.05, 0.8)
    assert done.output.splitlines() == [
        f"each arm needs {planned} labelled outcomes; no result before that",
        f"logreg: started experiment logreg-3 on {CHAMPION}, {SHADOW}: {planned} labelled "
        "outcomes per arm (revision 3)",
    ]
    e = topic.plan().experiment
    assert e is not None
    assert (e.arms, e.sample_size, e.metric, e.learn) == ([CHAMPION, SHADOW], planned, "ctr", "all")
    assert [v.role for v in topic.plan().versions] == ["champion", "arm"]


def test_an_impossible_design_is_refused_before_anything_is_read(topic: Topic) -> None:
    done = refused(
        "experiments",
        "start",
        "logreg",
        "--arms",
        "a,b",
        "--metric",
        "ctr",
        "--mde",
        "0.5",
        "--baseline",
        "0.7",
    )
    assert "is not a click rate: lower mde" in done.output
    assert topic.reads == 0


def test_starting_a_second_experiment_is_refused(topic: Topic) -> None:
    start_ctr(topic)
    done = refused(
        "experiments",
        "start",
        "logreg",
        "--arms",
        f"{CHAMPION},{SHADOW}",
        "--metric",
        "ctr",
        "--mde",
        "0.02",
        "--baseline",
        "0.1",
    )
    assert "logreg runs an experiment already; stop it first" in done.output


def arms(topic: Topic, partition: int, **outcomes: list[float]) -> None:
    """The arms' outcomes on `partition` as its worker reports them."""
    e = topic.plan().experiment
    assert e is not None
    reported = {}
    for arm, values in zip(e.arms, outcomes.values(), strict=True):
        o = ArmOutcomes()
        for value in values:
            o.add(value)
        reported[arm] = ArmStatus(n=o.n, mean=o.mean, m2=o.m2)
    topic.report(partition, experiment_id=e.experiment_id, arms=reported)


def test_status_before_the_planned_size_shows_progress_and_no_effect(topic: Topic) -> None:
    start_ctr(topic)
    planned = textbook_sample_size(0.1, 0.02, 0.05, 0.8)
    arms(topic, 0, control=[1.0] * 10 + [0.0] * 990, new=[1.0] * 300 + [0.0] * 700)
    arms(topic, 1, control=[0.0] * 500, new=[1.0] * 500)
    out = ok("experiments", "status", "logreg").output
    rows = [line.split() for line in out.splitlines()[2:4]]
    assert rows == [
        [CHAMPION, "control", "1500", str(planned), f"{1500 * 100 // planned}%"],
        [SHADOW, "1500", str(planned), f"{1500 * 100 // planned}%"],
    ]
    assert f"no effect, mean or p-value before every arm has {planned}" in out
    assert "effect " not in out and " p " not in out  # a huge difference, and no peeking


def test_status_once_every_arm_has_its_planned_size_shows_the_result(topic: Topic) -> None:
    start_ctr(topic, mde="0.1")
    planned = textbook_sample_size(0.1, 0.1, 0.05, 0.8)
    control_clicks, new_clicks = planned // 10, planned // 4  # 10% against 25%
    arms(
        topic,
        0,
        control=[1.0] * control_clicks + [0.0] * (planned - control_clicks),
        new=[1.0] * new_clicks + [0.0] * (planned - new_clicks),
    )
    out = ok("experiments", "status", "logreg").output
    assert "result (from the statuses, not yet published" in out and f"{SHADOW} wins" in out
    effect = (new_clicks - control_clicks) / planned
    assert f"{SHADOW} vs {CHAMPION}: effect +{effect:.4f} [" in out and ": better" in out


def test_status_prints_the_published_result(topic: Topic) -> None:
    start_ctr(topic)
    plan = topic.plan()
    assert plan.experiment is not None
    result = ExperimentResult(
        experiment_id="logreg-3",
        model="logreg",
        metric="ctr",
        sequential=False,
        alpha=0.05,
        power=0.8,
        mde=0.02,
        sample_size=plan.experiment.sample_size,
        counts={CHAMPION: 3900, SHADOW: 3900},
        means={CHAMPION: 0.1, SHADOW: 0.13},
        comparisons=[
            ComparisonResult(
                arm=SHADOW,
                control=CHAMPION,
                effect=0.03,
                ci_low=0.017,
                ci_high=0.043,
                p_value=0.0001,
                decision="better",
            )
        ],
        decision=SHADOW,
        at=NOW,
    )
    published = plan.model_copy(
        update={
            "revision": 4,
            "experiment": plan.experiment.model_copy(
                update={"result": result.model_dump(mode="json")}
            ),
        }
    )
    topic.state.plans["logreg"] = published
    out = ok("experiments", "status", "logreg").output
    assert f"result (published, {NOW.isoformat()}): {SHADOW} wins" in out
    assert f"{SHADOW} vs {CHAMPION}: effect +0.0300 [+0.0170, +0.0430], p 0.0001: better" in out
    done = ok("experiments", "stop", "logreg")
    assert done.output == f"logreg: stopped experiment logreg-3: {SHADOW} (revision 5)\n"
    assert [v.role for v in topic.plan().versions] == ["champion", "shadow"]


def test_sequential_status_shows_always_valid_p_values_after_the_burn_in(topic: Topic) -> None:
    done = start_ctr(topic, "--sequential")
    assert "each arm needs up to" in done.output and "may stop earlier" in done.output
    arms(topic, 0, control=[0.0] * 10, new=[1.0] * 10)
    out = ok("experiments", "status").output
    assert f"monitoring starts once every arm has {SEQUENTIAL_BURN_IN} labelled outcomes" in out
    assert "effect" not in out
    control_values = [1.0] * 15 + [0.0] * 135
    new_values = [1.0] * 20 + [0.0] * 130
    arms(topic, 0, control=control_values, new=new_values)
    out = ok("experiments", "status").output
    assert f"{SHADOW} vs {CHAMPION}: effect +0.0333 [" in out and "], p " in out


def test_bandit_checks_the_policys_params_and_stop_ends_it(topic: Topic) -> None:
    deploy_shadow(topic)
    args = [
        "experiments",
        "bandit",
        "logreg",
        "--arms",
        f"{CHAMPION},{SHADOW}",
        "--policy",
        "epsilon_greedy",
    ]
    done = refused(*args)
    assert "epsilon_greedy needs param 'epsilon'" in done.output
    done = ok(*args, "--param", "epsilon=0.1", "--seed", "7", "--learn", "routed")
    assert done.output == (
        f"logreg: started a bandit (epsilon_greedy) on {CHAMPION}, {SHADOW} (revision 3)\n"
    )
    bandit = topic.plan().bandit
    assert bandit is not None
    assert (bandit.params, bandit.seed, bandit.learn) == ({"epsilon": 0.1}, 7, "routed")
    topic.report(
        0, bandit_decisions=300, bandit_reward=30.0, bandit_shares={CHAMPION: 0.5, SHADOW: 0.5}
    )
    topic.report(
        1, bandit_decisions=100, bandit_reward=2.0, bandit_shares={CHAMPION: 0.9, SHADOW: 0.1}
    )
    out = ok("experiments", "status", "logreg").output.splitlines()
    # 400 decisions, 32 rewards; shares weighted by decisions: (300*.5 + 100*.9)/400 = 0.6.
    assert out[0].endswith("400 decisions, reward 0.0800 per decision")
    assert out[2].split() == [CHAMPION, "0.6000"] and out[3].split() == [SHADOW, "0.4000"]
    done = ok("experiments", "stop", "logreg")
    assert done.output == "logreg: stopped the bandit (revision 4)\n"
    done = refused("experiments", "stop", "logreg")
    assert "logreg runs no experiment or bandit" in done.output


def test_status_without_experiments_says_so(topic: Topic) -> None:
    assert ok("experiments", "status").output == "no experiment or bandit is running\n"
    deploy_shadow(topic)
    assert ok("experiments", "status", "logreg").output == (
        "logreg: no experiment or bandit running\n"
    )


# --- the pure parts --------------------------------------------------------------------------
def test_merged_arms_equal_the_statistics_of_every_outcome() -> None:
    plan = initial_plan(MODELS["logreg"], changed_by="cli")
    experiment = {
        "experiment_id": "e",
        "arms": ["a", "b"],
        "metric": "mae",
        "alpha": 0.05,
        "power": 0.8,
        "mde": 0.1,
        "baseline": 1.0,
        "sample_size": 10,
        "started": NOW,
    }
    plan = ModelPlan.model_validate({**plan.model_dump(), "experiment": experiment})
    values = [0.5, 2.0, 1.25, 3.0, 0.0, 4.5, 2.25]
    parts = [values[:3], [], values[3:4], values[4:]]  # uneven, one empty partition
    statuses = []
    for p, part in enumerate(parts):
        o = ArmOutcomes()
        for value in part:
            o.add(value)
        status = ArmStatus(n=o.n, mean=o.mean, m2=o.m2)
        statuses.append(
            ModelStatus(
                model="logreg",
                partition=p,
                revision=1,
                offset=0,
                versions=[],
                experiment_id="e",
                arms={"a": status},
                at=NOW,
            )
        )
    statuses.append(
        ModelStatus(
            model="logreg",
            partition=9,
            revision=1,
            offset=0,
            versions=[],
            experiment_id="old",
            arms={"a": ArmStatus(n=5, mean=9, m2=1)},
            at=NOW,
        )
    )  # another experiment: not counted
    merged = models_render.merged_arms(plan, statuses)
    assert merged["a"].n == len(values) and merged["b"].n == 0
    assert merged["a"].mean == pytest.approx(statistics.mean(values), abs=1e-12)
    assert merged["a"].variance == pytest.approx(statistics.variance(values), abs=1e-12)


def test_figures_count_only_statuses_of_the_versions_role() -> None:
    plan = initial_plan(MODELS["logreg"], changed_by="cli")
    version = plan.versions[0].model_copy(update={"joined_revision": 3})
    plan = plan.model_copy(update={"revision": 3, "versions": [version]})
    old = ModelStatus(
        model="logreg",
        partition=0,
        revision=2,
        offset=0,
        versions=[scored(CHAMPION, 900, 1.0, 1.0)],
        at=NOW,
    )
    new = old.model_copy(
        update={"partition": 1, "revision": 3, "versions": [scored(CHAMPION, 100, 0.5, 0.5)]}
    )
    f = models_render.version_figures(plan, [old, new])[CHAMPION]
    assert (f.labelled, f.loss, f.partitions) == (100, 0.5, 1)
    assert models_render.partitions_line(plan, [old, new]) == (
        "2 partition(s) reporting, partitions 0 not yet at revision 3"
    )


@pytest.mark.parametrize(
    ("text", "every", "expected"),
    [
        ("logreg@cb47a876", False, ("logreg", "cb47a876")),
        ("logreg@logreg@cb47a876", False, ("logreg", "logreg@cb47a876")),
        ("logreg", True, ("logreg", "*")),
    ],
)
def test_targets(text: str, every: bool, expected: tuple[str, str]) -> None:
    assert lifecycle_cli.parse_target(text, every=every) == expected


@pytest.mark.parametrize("text", ["logreg", "logreg@", "@cb47a876"])
def test_targets_without_a_version_are_refused(text: str) -> None:
    with pytest.raises(click.BadParameter, match="names no version"):
        lifecycle_cli.parse_target(text)


def test_policy_params_are_numbers() -> None:
    assert lifecycle_cli.parse_policy_params(["delta=1", "burn_in=5"]) == {"delta": 1, "burn_in": 5}
    for bad in ["epsilon", "epsilon=high", "=0.1"]:
        with pytest.raises(click.BadParameter, match="is not NAME=NUMBER"):
            lifecycle_cli.parse_policy_params([bad])


def test_arms_need_two() -> None:
    assert lifecycle_cli.parse_arms(" a, b ,") == ["a", "b"]
    with pytest.raises(click.BadParameter, match="names 1 arm"):
        lifecycle_cli.parse_arms("a")


def test_the_sample_size_is_the_designs() -> None:
    design = ExperimentDesign("mae", ("a", "b", "c"), mde=0.1, baseline=1.0)
    assert lifecycle_cli.sample_size_line(design) == (
        f"each arm needs {design.sample_size()} labelled outcomes; no result before that"
    )
