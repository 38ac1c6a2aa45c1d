"""The command line registers each command from its own module when asked for (``COMMAND_MODULES``)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from sednaya_monitor.cli import COMMAND_MODULES, _register, cli


def test_the_map_names_the_module_of_every_registered_command() -> None:
    _register()
    found = {name: command.callback.__module__ for name, command in cli.commands.items() if command.callback}
    assert found == {name: f"sednaya_monitor.cli.{module}" for name, module in COMMAND_MODULES.items()}


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    for name in COMMAND_MODULES:
        assert f"  {name} " in result.output


def test_a_stage_process_imports_neither_scrapy_nor_fastapi() -> None:
    """``embed --help`` goes through the same lookup as ``embed``: only the stage commands' module is
    imported (Scrapy, Twisted, trafilatura and FastAPI stay out of a stage process's memory)."""
    code = (
        "import sys\n"
        "from sednaya_monitor.cli import main\n"
        "sys.argv = ['sednaya-monitor', 'embed', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('scrapy', 'twisted', 'trafilatura', 'fastapi') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--bus" in out  # the embed command's help
    assert out.strip().splitlines()[-1] == "[]"
