"""Settings in sections: each field in one known section, `riverrun config` by section."""

from collections import Counter

import pytest
from click.testing import CliRunner

from streams.cli.main import main
from streams.settings import MASK, SECTIONS, Settings, env_name, sections

SECRET = "s3cr3t-never-shown"


def test_every_setting_is_in_exactly_one_known_section_and_says_what_it_does() -> None:
    """A setting added without a section or a description fails here, naming it."""
    listed = Counter(name for names in SECTIONS.values() for name in names)
    fields = Settings.model_fields
    assert [env_name(n) for n in fields if n not in listed] == [], "add them to SECTIONS"
    assert [n for n, count in listed.items() if count > 1] == [], "listed in two sections"
    assert [n for n in listed if n not in fields] == [], "SECTIONS names no such setting"
    undescribed = [env_name(n) for n, field in fields.items() if not (field.description or "")]
    assert undescribed == [], "give them a description"


def test_sections_give_each_field_with_its_type_default_and_description() -> None:
    by_section = sections()
    assert list(by_section) == list(SECTIONS)
    assert sum(len(fields) for fields in by_section.values()) == len(Settings.model_fields)
    for fields in by_section.values():
        for name, field in fields.items():
            assert field is Settings.model_fields[name]
    assert by_section["Topics"]["events_topic"].default == "events"


def config_sections(output: str) -> dict[str, list[list[str]]]:
    """`riverrun config`'s rows (variable, value, [source]) by heading, in printed order."""
    found: dict[str, list[list[str]]] = {}
    for line in output.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            heading = line.removesuffix(":")
            found[heading] = []
        elif line.startswith("  RIVERRUN_"):
            found[heading].append(line.split())
    return found


def test_config_prints_every_setting_once_under_its_section_secrets_masked(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("RIVERRUN_API_TOKENS", SECRET)
    clean_environment.setenv("RIVERRUN_BATCH_SIZE", "500")
    done = CliRunner().invoke(main, ["config"])
    assert done.exit_code == 0, done.output
    printed = config_sections(done.output)
    assert list(printed) == list(SECTIONS)  # every section, in a stable order
    for title, names in SECTIONS.items():
        assert [row[0] for row in printed[title]] == [env_name(n) for n in names]
    rows = {row[0]: row[1:] for section in printed.values() for row in section}
    assert len(rows) == len(Settings.model_fields)
    assert rows["RIVERRUN_API_TOKENS"] == [MASK, "[environment]"]
    assert rows["RIVERRUN_BATCH_SIZE"] == ["500", "[environment]"]
    assert rows["RIVERRUN_EVENTS_TOPIC"] == ["events", "[default]"]
    assert SECRET not in done.output


def test_config_env_groups_the_variables_set_under_their_sections(
    clean_environment: pytest.MonkeyPatch,
) -> None:
    clean_environment.setenv("RIVERRUN_API_TOKENS", SECRET)
    clean_environment.setenv("RIVERRUN_BATCH_SIZE", "500")
    clean_environment.setenv("RIVERRUN_EVENTS_TOPIC", "clicks-in")
    clean_environment.setenv("RIVERRUN_PROCESSING_GUARANTEE", "exactly_once")
    done = CliRunner().invoke(main, ["config", "--env"])
    assert done.exit_code == 0, done.output
    assert done.output == (
        "# Topics\n"
        "RIVERRUN_EVENTS_TOPIC=clicks-in\n"
        "\n"
        "# Delivery (batches, guarantee)\n"
        "RIVERRUN_BATCH_SIZE=500\n"
        "RIVERRUN_PROCESSING_GUARANTEE=exactly_once\n"
        "\n"
        "# API (/v1)\n"
        "# RIVERRUN_API_TOKENS is a secret: set it from your secret store\n"
    )
