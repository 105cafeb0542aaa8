"""Every command block of README.md and docs/*.md runs as written, so the docs cannot rot.

Each command runs in a sandbox that looks like the repository (configs/, run_scripts/, docs/, .venv/ linked)
beside a small `../shared/data` (a 20 Newsgroups archive, AG News and SST-2 of a few dozen rows each, in the
real layouts), as root with OpenMPI's root permission taken out of the environment: an `mpirun` line must carry
what the documented setup needs. `fednlp` commands run in this process (torch is imported once); anything else
(mpirun, scripts, a heredoc) runs in bash with `.venv/bin` first on PATH, as README's setup says.

What the docs let a reader change, and only that, is changed to keep the run small (SUBSTITUTIONS below: README
says flags win over --config and the run scripts take extra flags). A command that cannot run here is skipped
by a rule of SKIPPED with its reason, never silently, and a rule that skips nothing fails (the list cannot rot).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tarfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from fednlp.cli import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND_WORDS = ("fednlp", "mpirun", "bash", "nice", "python", "pip")
LINKED = ("configs", "run_scripts", "scripts", "docs", "tests", "fednlp", ".venv")

#: Commands that cannot run here: (doc, regular expression searched in the command) -> why.
SKIPPED = {
    ("README.md", r"^bash run_scripts/demo\.sh"): "the demo trains MiniLM on BBC News for minutes; its steps are "
                                                  "README's own commands, which run here at small sizes",
    ("README.md", r"^bash scripts/test\.sh"): "runs this very test suite",
    ("docs/privacy.md", r"privacy_utility\.sh"): "the privacy study: hours of MiniLM training",
    ("docs/real-world.md", r"run_scripts/real_world\.sh"): "the real-world study: hours of training",
    ("docs/results.md", r"run_scripts/(results_\w+|study)\.sh"): "a results study: hours of training",
    ("docs/fairness.md", r"run_scripts/study_fairness\.sh"): "the fairness study: an hour of MiniLM training",
    ("docs/fairness-mitigation.md", r"run_scripts/study_lm_augment\.sh"): "the LM augmentation study: half an hour "
                                                                         "of training",
    ("docs/fairness-mitigation.md", r"run_scripts/study_distill\.sh"): "the distillation study: an hour of "
                                                                      "training",
}

#: Size substitutions a reader may make (README: flags win over --config). ADDED: flag -> value given to every
#: train and centralized command (replacing the command's own); REPLACED: flag -> value where any command gives it.
ADDED = {"--model": "tiny-bert", "--max-seq-length": "16", "--eval-max-examples": "8", "--batch-size": "8"}
ADDED_TO_TRAIN = {"--rounds": "1", "--local-steps": "1"}
REPLACED = {"--epochs": "1", "--steps": "1", "--rounds": "1", "--local-steps": "1"}
KEPT_MODELS = ("tiny-bert", "tiny-gpt2")  # already tiny
#: run_scripts/run_<task>.sh ALGORITHM METHOD CLIENT_LR SERVER_LR ROUNDS RANKS [flags]: ROUNDS -> 1, ADDED added.
RUN_SCRIPT_ROUNDS = 4
#: Other documented substitutions (the docs name these files as the reader's own or as the study's output).
SUBSTITUTIONS = {
    "../shared/data/...": "small files in the real layouts (see shared_data below), at the same paths",
    "my.csv, my.jsonl (the reader's own file)": "20 rows written by the test",
    "partition --method natural --clients N": "--clients left out (natural finds it from the data; N is the real "
                                              "corpus's user count), and a group name's `clients=N_` dropped",
    "pip install ./my_plugin": "tests/plugin_example on PYTHONPATH with its entry point, not installed into the "
                               "shared environment",
}


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str


def command_blocks(path: Path) -> list[tuple[int, list[str]]]:
    """(first line, lines) of each fenced block that holds shell commands: a bash/sh fence, or a bare fence whose
    first line starts with a command (diagrams and program output are left alone)."""
    blocks, lines, start, fence = [], path.read_text().splitlines(), None, ""
    for number, line in enumerate(lines, 1):
        if line.startswith("```") and start is None:
            start, fence, body = number, line[3:].strip(), []
        elif line.startswith("```"):
            first = body[0].strip() if body else ""
            word = first.split()[0] if first else ""
            if fence in ("bash", "sh", "shell") or (not fence and (word in COMMAND_WORDS or word.startswith(
                    "run_scripts/") or re.match(r"[A-Z_]+=\S* ", first))):
                blocks.append((start + 1, body))
            start = None
        elif start is not None:
            body.append(line)
    return blocks


def commands(path: Path) -> list[Command]:
    """Each command of the page's blocks: backslash continuations joined, a heredoc kept with its command."""
    doc = path.relative_to(REPO).as_posix()
    found = []
    for start, body in command_blocks(path):
        index = 0
        while index < len(body):
            line, number = body[index], start + index
            index += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            while line.endswith("\\") and index < len(body):
                line, index = line[:-1] + " " + body[index].strip(), index + 1
            heredoc = re.search(r"<<'?(\w+)'?", line)
            if heredoc:
                end = body.index(heredoc.group(1), index)
                line, index = "\n".join([line, *body[index:end + 1]]), end + 1
            found.append(Command(doc, number, line))
    return found


def skip_reason(command: Command) -> str | None:
    for (doc, pattern), reason in SKIPPED.items():
        if doc == command.doc and re.search(pattern, command.text):
            return reason
    return None


def sized(argv: list[str]) -> list[str]:
    """A fednlp argv at the sizes of ADDED and REPLACED, and without natural's real client count."""
    argv = list(argv)
    if argv[:1] == ["partition"] and "natural" in argv and "--clients" in argv:
        at = argv.index("--clients")
        del argv[at:at + 2]
    if "--method" in argv and argv[:1] == ["train"]:
        at = argv.index("--method") + 1
        argv[at] = re.sub(r"^natural_clients=\d+_", "natural_", argv[at])
    sizes = dict(ADDED) if argv[:1] in (["train"], ["centralized"]) else {}
    if argv[:1] == ["train"] and "--local-epochs" not in argv:
        sizes.update(ADDED_TO_TRAIN)
    sizes.update({flag: value for flag, value in REPLACED.items() if flag in argv})
    if "--continual" in argv:  # a continual run's rounds are its periods x rounds per period, kept
        sizes.pop("--rounds", None)
    if "--model" in argv and argv[argv.index("--model") + 1] in KEPT_MODELS:
        sizes.pop("--model", None)
    for flag, value in sizes.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    return argv


def sized_shell(argv: list[str]) -> list[str]:
    """mpirun ... fednlp ARGS and run_scripts/run_<task>.sh at the sizes of `sized`."""
    if "fednlp" in argv:
        at = argv.index("fednlp") + 1
        return argv[:at] + sized(argv[at:])
    if argv and re.match(r"run_scripts/run_\w+\.sh", argv[0]):
        argv = list(argv)
        argv[1 + RUN_SCRIPT_ROUNDS] = "1"
        return argv + sized(["train"])[1:]
    return argv


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """A repository-like working directory beside a small ../shared/data."""
    root = tmp_path_factory.mktemp("docs")
    work = root / "repo"
    work.mkdir()
    for name in LINKED:
        (work / name).symlink_to(REPO / name)
    shared_data(root / "shared" / "data")
    (work / "my.csv").write_text("text,label\n" + "".join(f"row {i} text,{'ab'[i % 2]}\n" for i in range(20)))
    (work / "my.jsonl").write_text("".join(f'{{"text": "row {i}", "label": "{"ab"[i % 2]}"}}\n' for i in range(20)))
    plugin = root / "plugin"  # the example plugin, importable with its entry point (a dist-info), not installed
    info = plugin / "fednlp_plugin_example-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fednlp-plugin-example\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[fednlp.algorithms]\nfedavg_clip = fednlp_plugin_example:FedAvgClip\n")
    (plugin / "fednlp_plugin_example.py").symlink_to(REPO / "tests" / "plugin_example" / "fednlp_plugin_example.py")
    return work


def shared_data(data: Path) -> None:
    """20 Newsgroups (3 groups, 6 authors), AG News and SST-2, a few dozen rows each, in the real layouts."""
    news = data / "20newsgroups"
    news.mkdir(parents=True)
    words = {"sci.space": "orbit launch rocket moon", "rec.autos": "engine wheel car brake",
             "talk.politics.misc": "vote law tax senate"}
    with tarfile.open(news / "20news-bydate.tar.gz", "w:gz") as tar:
        for split, count in (("train", 40), ("test", 6)):
            for group, text in words.items():
                for i in range(count):
                    post = (f"From: Author {i % 6} <author{i % 6}@example.org>\nSubject: {text}\n\n"
                            f"{text} {i}, {('he said his', 'she said her')[i % 2]}\n")  # gendered words, as real posts
                    member = tarfile.TarInfo(f"20news-bydate-{split}/{group}/{1000 + i + 100 * (split == 'test')}")
                    member.size = len(post.encode("latin-1"))
                    tar.addfile(member, io.BytesIO(post.encode("latin-1")))
    (data / "ag_news").mkdir()
    (data / "ag_news" / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    (data / "ag_news" / "test.csv").write_text("".join(f'"{1 + i % 4}","title {i}","news item {i}"\n'
                                                       for i in range(40)))
    sentences = ["he is a good man", "she is a bad woman", "a charming film", "a dull mess", "his brother laughed",
                 "her sister cried"]
    (data / "sst2").mkdir()
    for name, count in (("train.tsv", 120), ("dev.tsv", 12)):
        (data / "sst2" / name).write_text("sentence\tlabel\n" + "".join(
            f"{sentences[i % 6]} {i} \t{(i % 6) % 2}\n" for i in range(count)))


def run_command(command: Command, work: Path) -> str | None:
    """Run one command in `work`; the failure as text, or None."""
    if re.match(r"pip install \./my_plugin\b", command.text):
        return None  # SUBSTITUTIONS: the example plugin is on PYTHONPATH instead
    argv = None if "\n" in command.text else shlex.split(command.text, comments=True)
    if argv and argv[0] == "fednlp":
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(sized(argv[1:]))
            except SystemExit as exc:  # argparse
                code = exc.code
            except Exception:  # a traceback is a failure of this command, not of the page's others
                code = traceback.format_exc(limit=-3)
        return None if code == 0 else f"exit {code}: {out.getvalue()[-2000:]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMPI_ALLOW_RUN_AS_ROOT")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(work.parent / "plugin"), env.get("PYTHONPATH")]))
    script = command.text if argv is None else shlex.join(sized_shell(argv))
    done = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    return None if done.returncode == 0 else f"exit {done.returncode}: {(done.stdout + done.stderr)[-2000:]}"


DOC_COMMANDS = {path.relative_to(REPO).as_posix(): commands(path) for path in DOCS}


def test_every_documented_command_runs_as_written(sandbox):
    """One test, the pages in order (README first: the reader of any page has followed its setup), so that
    pytest-xdist never splits the pages over workers that would each redo README's."""
    failures = []
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(sandbox)
        from fednlp.algorithms.registry import ALGORITHMS

        # The registry as the other tests see it, loaded before the example plugin is on the path; the docs
        # run on a copy that reads the entry points again (the plugin's into the copy) and leaves with it.
        ALGORITHMS.load()
        monkeypatch.setattr(ALGORITHMS, "entries", dict(ALGORITHMS.entries))
        monkeypatch.setattr(ALGORITHMS, "_loaded", False)
        monkeypatch.syspath_prepend(str(sandbox.parent / "plugin"))
        for doc, found in DOC_COMMANDS.items():
            for command in found:
                if skip_reason(command) is None and (failure := run_command(command, sandbox)):
                    failures.append(f"{doc}:{command.line}: {command.text}\n  {failure}")
    assert not failures, "\n".join(failures)


def test_every_skip_rule_skips_a_documented_command():
    used = {rule for rule in SKIPPED for command in DOC_COMMANDS.get(rule[0], []) if re.search(rule[1], command.text)}
    assert set(SKIPPED) - used == set()


def test_the_block_finder_sees_bare_fences_and_leaves_program_output_alone(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\nfednlp data list\n```\n```\naccuracy 0.5\n```\n```bash\nA=1 bash x.sh \\\n  --y\n```\n")
    found = [body for _, body in command_blocks(page)]
    assert found == [["fednlp data list"], ["A=1 bash x.sh \\", "  --y"]]
