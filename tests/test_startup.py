"""Start-up: the commands that do no training never import torch or transformers (importing them costs
seconds), `fednlp --help` builds no command's parser, and the help lines it shows are the commands' own."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from fednlp.cli import COMMAND_GROUPS, COMMANDS, build_parser

HEAVY = ("torch", "transformers")


def imported_after(code: str) -> set[str]:
    """Top-level modules imported by `code` in a fresh interpreter."""
    probe = code + "\nimport sys\nprint(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stdout.split())


@pytest.mark.parametrize("argv", [["--help"], ["partition"], ["partition-stats"], ["data", "list"], ["leaderboard"],
                                  ["data", "prepare"], ["fairness"], ["audit"], ["canaries"], ["supervise"]])
def test_building_the_parser_imports_no_torch(argv: list[str]) -> None:
    modules = imported_after(f"from fednlp.cli import build_parser\nbuild_parser({argv!r})")
    assert not modules & set(HEAVY), argv


def test_help_imports_neither_numpy_nor_the_config() -> None:
    modules = imported_after("from fednlp.cli import build_parser\nbuild_parser(['--help'])")
    assert not modules & {"torch", "transformers", "numpy", "h5py", "yaml"}


def test_partition_and_its_statistics_run_without_torch(tmp_path: Path) -> None:
    """The commands themselves, run end to end on a small data file, not only their parsers."""
    csv = tmp_path / "small.csv"
    csv.write_text("text,label\n" + "".join(f"text {i},{'ab'[i % 2]}\n" for i in range(40)))
    data, part = tmp_path / "small.h5", tmp_path / "p.h5"
    setup = (f"from fednlp.cli import main\nassert main(['data', 'prepare', '--dataset', 'csv', '--source', {str(csv)!r}, "
             f"'--text-column', 'text', '--label-column', 'label', '--test-fraction', '0.25', '--out', {str(data)!r}]) == 0")
    subprocess.run([sys.executable, "-c", setup], check=True, capture_output=True, timeout=300)
    for argv in (["partition", "--data", str(data), "--out", str(part), "--method", "niid_label", "--clients", "4",
                  "--alpha", "1.0"],
                 ["partition", "--data", str(data), "--out", str(part), "--method", "uniform", "--clients", "3"],
                 ["partition-stats", "--data", str(data), "--partition", str(part)],
                 ["data", "list"]):
        modules = imported_after(f"from fednlp.cli import main\nassert main({argv!r}) == 0")
        assert not modules & set(HEAVY), argv


def test_the_help_lines_are_the_commands_own_and_every_command_is_listed() -> None:
    """COMMANDS (what `fednlp --help` shows without building the groups) matches what the groups build."""
    full = build_parser(["all"])
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    built = {action.dest: action.help for action in sub._choices_actions}
    assert built == {name: text for name, (text, _) in COMMANDS.items()}
    assert {group for _, group in COMMANDS.values()} == set(COMMAND_GROUPS)
    for name, (_, group) in COMMANDS.items():  # each command's group really builds it
        one = argparse.ArgumentParser().add_subparsers()
        group(one)
        assert name in one.choices


def test_a_command_gets_its_full_parser() -> None:
    parser = build_parser(["partition"])
    args = parser.parse_args(["partition", "--data", "d.h5", "--out", "p.h5", "--method", "uniform", "--clients", "3"])
    assert args.clients == 3 and args.func.__name__ == "cmd_partition"
