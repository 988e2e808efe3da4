"""The command-line reference: every command of `riverrun` (the click group
`streams.cli.main:main`) as the mkdocs-click extension renders it, once each command,
option and argument is documented.

A command without help, an option without help, or an argument its command's help does
not name fails the build: `--help` is the only manual a terminal has.
"""

import re
from collections.abc import Iterator

import click
from mkdocs.exceptions import PluginError

MODULE = "streams.cli.main"
COMMAND = "main"
PROG_NAME = "riverrun"


def render() -> str:
    """The mkdocs-click block of `riverrun` and its subcommands, checked first."""
    from streams.cli import main

    check(getattr(main, COMMAND), PROG_NAME)
    return "\n".join(
        [
            "::: mkdocs-click",
            f"    :module: {MODULE}",
            f"    :command: {COMMAND}",
            f"    :prog_name: {PROG_NAME}",
            "    :depth: 1",
            # Plain: the options as `--help` prints them. mkdocs-click 0.9's table shows
            # click 8.3's Sentinel.UNSET as the default of every option without one
            # (mkdocs/mkdocs-click#95).
            "    :style: plain",
            "    :list_subcommands: true",
        ]
    )


def check(command: click.Command, path: str) -> None:
    """A PluginError naming every command, option and argument left undocumented."""
    problems = list(undocumented(command, path))
    if problems:
        raise PluginError("command-line reference: " + "; ".join(problems))


def commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
    """(`riverrun kafka up`, its command) for the command and each one under it."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, f"{path} {name}")


def undocumented(command: click.Command, path: str) -> Iterator[str]:
    for where, each in commands(command, path):
        if each.hidden:
            continue
        text = each.help or each.short_help or ""
        if not text.strip():
            yield f"`{where}` has no help (its docstring)"
        for param in each.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                yield f"`{where} {param.opts[0]}` has no help="
            if isinstance(param, click.Argument):
                metavar = param.make_metavar(click.Context(each))
                name = (re.findall(r"[A-Z][A-Z0-9_]*", metavar) or [metavar])[0]  # NAME[@V]
                if name not in text:
                    yield f"`{where}`'s help does not say what its argument {name} is"
