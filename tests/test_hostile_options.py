"""Every option of `fednlp train`, `centralized`, `partition` and `data prepare`, fed hostile values.

Hypothesis draws one option of one command and a value a tired researcher (or a broken script) could
type: NaN, infinities, negative, zero, beyond 64 bits, empty, text where a number belongs, a number
where a name belongs. Whatever it is, the command must end with exit code 2 and exactly one line on
stderr (or, for a value that happens to be valid, run normally), never a traceback, and a refused
command leaves no file behind. The options are read from the parser, so a new option is fuzzed the day
it is added.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pytest

from conftest import prepare_small
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fednlp.cli import build_parser, main

METHOD = "uniform_clients=4"
# Each command's base: a cheap valid call (20 examples, tiny BERT, one round of one step).
BASE = {
    "train": ["train", "--data", "{data}", "--partition", "{part}", "--method", METHOD, "--rounds", "1",
              "--clients-per-round", "2", "--local-steps", "1", "--batch-size", "4", "--max-seq-length", "16",
              "--eval-max-examples", "4", "--save-model", "false", "--out", "{out}/run"],
    "centralized": ["centralized", "--data", "{data}", "--steps", "1", "--batch-size", "4", "--max-seq-length", "16",
                    "--eval-max-examples", "4", "--save-model", "false", "--out", "{out}/run"],
    "partition": ["partition", "--data", "{data}", "--out", "{out}/p.h5", "--method", "niid_label", "--clients", "3",
                  "--alpha", "1.0"],
    "data prepare": ["data", "prepare", "--dataset", "csv", "--source", "{csv}", "--text-column", "text",
                     "--label-column", "label", "--test-fraction", "0.2", "--out", "{out}/d.h5"],
}
NOT_VALUES = {"-h", "--help"}

NUMBER_HOSTILE = ["nan", "NaN", "inf", "-inf", "-1", "-0.5", "0", "1e308", "-1e308", "99999999999999999999999",
                  "-99999999999999999999999", "", " ", "abc", "1,5", "0x10", "[1]", "None", "true"]
MUST_REFUSE = {"nan", "NaN", "inf", "-inf", "", " ", "abc", "1,5", "0x10", "[1]", "None", "true",
               "99999999999999999999999", "-99999999999999999999999"}  # never valid for a number
INDEX_OPTIONS = ("--token-column", "--tag-column")  # Python column indices: -1 is the last column
TEXT_HOSTILE = ["", " ", "nan", "-1", "0", "1e308", "..", "/", "nosuch", "a/b/c", "\t", "é", "--", "-"]
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)


def _options(command: str) -> list[argparse.Action]:
    parser = build_parser(command.split())  # as the command line builds it (train adds the algorithms' flags)
    for word in command.split():
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return [a for a in parser._actions if a.option_strings and not set(a.option_strings) & NOT_VALUES]


def _kind(action: argparse.Action) -> str:
    if action.type in (int, float):
        return "number"
    if action.choices:
        return "choice"
    return "text"


@st.composite
def hostile(draw, command: str) -> tuple[str, str, bool]:
    """(flag, value, whether the value can never be valid)."""
    action = draw(st.sampled_from(_options(command)))
    flag = action.option_strings[0]
    kind = _kind(action)
    if kind == "number":
        value = draw(st.one_of(st.sampled_from(NUMBER_HOSTILE), TEXT,
                               st.floats(allow_nan=True, allow_infinity=True).map(repr),
                               st.integers(min_value=-(2**70), max_value=-1).map(str)))
        must_refuse = value in MUST_REFUSE or _not_a_number(value, action.type)
        if not must_refuse and flag not in INDEX_OPTIONS:
            must_refuse = action.type(value) < 0  # no count, rate or seed of fednlp is negative
        return flag, value, must_refuse
    if kind == "choice":
        value = draw(st.one_of(st.sampled_from(TEXT_HOSTILE), TEXT))
        return flag, value, value not in action.choices
    return flag, draw(st.one_of(st.sampled_from(TEXT_HOSTILE), TEXT)), False


def _not_a_number(text: str, kind: type) -> bool:
    try:
        value = kind(text)
    except ValueError:
        return True
    return value != value or value in (float("inf"), float("-inf"))


def _with(argv: list[str], flag: str, value: str) -> list[str]:
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hostile")
    csv, data, part = prepare_small(root)
    return {"data": str(data), "part": str(part), "csv": str(csv)}


def _call(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code
    return code, err.getvalue()


def _files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("command", list(BASE))
def test_a_hostile_option_is_one_line_and_exit_2_never_a_traceback(command, files, tmp_path_factory,
                                                                  monkeypatch) -> None:
    workdir = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(workdir)  # a hostile --out or --source that is a relative name lands here

    @settings(max_examples=25 if command in ("train", "centralized") else 40, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hostile(command))
    def check(drawn: tuple[str, str, bool]) -> None:
        flag, value, must_refuse = drawn
        out = tmp_path_factory.mktemp("out")
        before = _files_under(workdir)
        argv = [a.format(out=out, **files) for a in BASE[command]]
        code, err = _call(_with(argv, flag, value))
        assert "Traceback" not in err, (flag, value, err)
        assert code in (0, 2, 3), (flag, value, code, err)  # 3: a run whose loss is not finite (e.g. --lr 1e308)
        if must_refuse:
            assert code == 2, (flag, value, err)
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("fednlp: error: "), (flag, value, err)
            assert _files_under(out) == [], (flag, value, _files_under(out))
            assert _files_under(workdir) == before, (flag, value)

    check()


def test_the_fuzzed_options_are_every_option() -> None:
    """The strategy sees every flag of the four commands (read from the parser, not listed by hand)."""
    flags = {a.option_strings[0] for a in _options("train")}
    assert {"--lr", "--seed", "--out", "--rounds", "--max-seq-length", "--config", "--resume", "--mu"} <= flags
    assert {"--clients", "--alpha", "--seed", "--out"} <= {a.option_strings[0] for a in _options("partition")}
    assert {"--test-fraction", "--token-column", "--out"} <= {a.option_strings[0] for a in _options("data prepare")}


@pytest.mark.parametrize("command", list(BASE))
def test_every_numeric_option_refuses_nan_infinity_and_negatives(command, files, tmp_path, capsys) -> None:
    """The deterministic sweep beside the fuzzing: each number flag, each of these values, exit 2, one line."""
    numbers = [a for a in _options(command) if a.type in (int, float) and a.option_strings[0] not in INDEX_OPTIONS]
    assert numbers
    argv = [a.format(out=tmp_path, **files) for a in BASE[command]]
    for action in numbers:
        for value in (["nan", "inf", "-inf", "-1"] if action.type is float else ["-1", "1e3", "99999999999999999999"]):
            code, err = _call(_with(argv, action.option_strings[0], value))
            assert code == 2 and err.count("\n") == 1 and err.startswith("fednlp: error: "), (action.dest, value, err)
            assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
