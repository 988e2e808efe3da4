"""The reference pages generated from the code (docs/hooks): each lists everything the code
has, and an undocumented setting, command, option or public name fails the build."""

import doctest
import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import markdown
import pytest
from mkdocs.exceptions import PluginError
from pydantic import Field

from streams import settings as settings_module
from streams.cli.main import main
from streams.settings import SECTIONS, Settings, env_name

HOOKS = Path(__file__).resolve().parents[2] / "docs" / "hooks"


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hook's modules importable, as mkdocs makes them when it loads the hook."""
    monkeypatch.syspath_prepend(str(HOOKS))
    yield


def hook(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_the_settings_page_has_every_setting_once_under_its_section(hooks: None) -> None:
    page = hook("reference_settings").render()
    headings = re.findall(r"^## (.+)$", page, flags=re.MULTILINE)
    assert headings == list(SECTIONS)
    rows = re.findall(r'^\| <span id="(RIVERRUN_\w+)">', page, flags=re.MULTILINE)
    assert rows == [env_name(name) for names in SECTIONS.values() for name in names]
    assert sorted(rows) == sorted(env_name(name) for name in Settings.model_fields)


def test_a_settings_row_says_type_default_bounds_and_description(hooks: None) -> None:
    page = hook("reference_settings").render()
    row = {line.split("`")[1]: line for line in page.splitlines() if 'id="RIVERRUN_' in line}
    assert row["RIVERRUN_BATCH_SIZE"].split(" | ")[1:4] == ["int", "`1000`", "> 0"]
    assert "Most events fetched and processed per batch." in row["RIVERRUN_BATCH_SIZE"]
    assert " | choice | `PLAINTEXT` | one of `PLAINTEXT`, " in row["RIVERRUN_SECURITY_PROTOCOL"]
    assert (
        " | list of int | `[1, 24, 168]` | each > 0; at least 1 item | "
        in (row["RIVERRUN_ACTIVITY_HOURS"])
    )
    # A secret's type says so; a path under the user's home is not the build machine's.
    assert " | secret | unset | " in row["RIVERRUN_CHECKPOINT_KEY"]
    assert "computed: see its description" in row["RIVERRUN_KAFKA_CACHE_DIR"]
    assert str(Path.home()) not in page
    # The objects of a list setting get a table of their own, linked from its type.
    assert "[push sink](#push-sink-objects)" in row["RIVERRUN_PUSH_SINKS"]
    assert "### Push sink objects" in page and "| `token` | secret | unset |" in page
    assert "| `url` | str | required | matches `^https?://` |" in page


def test_descriptions_stay_markdown_safe_in_a_table_cell(hooks: None) -> None:
    cell = hook("reference_settings")._markdown
    assert cell("Unset: <group>-<host> | see RIVERRUN_BROKER") == (
        "Unset: &lt;group&gt;-&lt;host&gt; &#124; see `RIVERRUN_BROKER`"
    )
    assert cell("rolling (`*_window`) metrics, a*b*c") == r"rolling (`*_window`) metrics, a\*b\*c"
    assert cell("the rest are '__other__'") == r"the rest are '\_\_other\_\_'"


class Undescribed(Settings):
    shiny_new_option: int = 3


class Described(Settings):
    shiny_new_option: int = Field(default=3, description="Does something new.")


def test_a_setting_without_a_description_fails_the_build(
    hooks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "Settings", Undescribed)
    monkeypatch.setattr(
        settings_module,
        "SECTIONS",
        {**SECTIONS, "Models": (*SECTIONS["Models"], "shiny_new_option")},
    )
    with pytest.raises(PluginError, match="without a description: RIVERRUN_SHINY_NEW_OPTION"):
        hook("reference_settings").render()


def test_a_setting_in_no_section_fails_the_build(
    hooks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_module, "Settings", Described)
    with pytest.raises(PluginError, match=r"in no section .*: RIVERRUN_SHINY_NEW_OPTION"):
        hook("reference_settings").render()
    # Once in a section, it is on the page.
    monkeypatch.setattr(
        settings_module,
        "SECTIONS",
        {**SECTIONS, "Models": (*SECTIONS["Models"], "shiny_new_option")},
    )
    assert "| int | `3` |  | Does something new. |" in hook("reference_settings").render()


def test_the_reference_generators_doctests_pass(hooks: None) -> None:
    assert doctest.testmod(hook("reference_settings")).failed == 0


def command_paths(command: click.Command, path: str = "riverrun") -> Iterator[str]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from command_paths(sub, f"{path} {name}")


def test_the_cli_page_has_every_command_and_subcommand(hooks: None) -> None:
    block = hook("reference_cli").render()
    html = markdown.markdown(block, extensions=["attr_list", "tables", "mkdocs-click"])
    headings = re.findall(r'<h\d data-toc-label="[^"]*" id="([^"]+)"', html)
    expected = [path.replace(" ", "-") for path in command_paths(main)]
    assert len(expected) > 20  # the commands and every subcommand of models, experiments...
    assert sorted(headings) == sorted(expected)
    assert "--wait-seconds FLOAT RANGE" in html
    assert "Sentinel" not in html and "UNSET" not in html  # no placeholder for a default


def test_an_undocumented_command_option_or_argument_fails_the_build(hooks: None) -> None:
    @click.group()
    def tool() -> None:
        """A tool."""

    @tool.command()
    @click.argument("target")
    @click.option("--fast", is_flag=True)
    @click.option("--slow", is_flag=True, help="Go slowly.")
    def run(target: str, fast: bool, slow: bool) -> None:
        pass

    with pytest.raises(PluginError) as err:
        hook("reference_cli").check(tool, "tool")
    assert str(err.value) == (
        "command-line reference: `tool run` has no help (its docstring); "
        "`tool run`'s help does not say what its argument TARGET is; "
        "`tool run --fast` has no help="
    )


def test_every_riverrun_command_option_and_argument_is_documented(hooks: None) -> None:
    assert list(hook("reference_cli").undocumented(main, "riverrun")) == []


def test_the_python_api_page_documents_each_public_name(hooks: None) -> None:
    import riverrun

    page = hook("reference_python_api").render()
    assert page.split("\n\n") == [f"::: riverrun.{name}" for name in riverrun.__all__]


def test_a_public_name_without_a_docstring_fails_the_build(hooks: None, tmp_path: Path) -> None:
    package = tmp_path / "shinypkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        '"""A package."""\n'
        "from shinypkg.core import Documented, Undocumented\n"
        "VERSION = '1'\n"
        "__all__ = ['Documented', 'Undocumented', 'VERSION']\n"
    )
    (package / "core.py").write_text(
        'class Documented:\n    """Says what it is."""\n\n\nclass Undocumented:\n    pass\n'
    )
    with pytest.raises(PluginError) as err:
        hook("reference_python_api").check(
            "shinypkg", ["Documented", "Undocumented", "VERSION", "Gone"], [tmp_path]
        )
    assert str(err.value).endswith(
        "without a docstring: Undocumented, VERSION, Gone (not found in the source)"
    )


def test_an_unknown_generated_section_fails_the_build(hooks: None) -> None:
    class Page:
        class file:  # as on mkdocs' Page
            src_path = "reference/x.md"

    with pytest.raises(PluginError, match=r"reference/x.md: unknown generated section"):
        hook("reference").on_page_markdown("<!-- generated: nothing -->", Page, None, None)
