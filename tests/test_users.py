"""Real users in the data: the user, order and group fields of the readers (20 Newsgroups' authors, AESLC's
mailboxes, the generic readers' --user-column / --time-column / --group-column), and the natural partition
over users with --min-examples and its client sizes in partition-stats."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from fednlp.cli import main
from fednlp.data.datafile import DataFile, read_data_file
from fednlp.data.readers import ReaderOptions, get_reader
from fednlp.data.readers.users import normalised_address, scaled_ranks


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def authors(users: list[str]) -> tuple[int, int, int, int]:
    """(distinct authors, authors of one post, authors of ten or more, the posts of those)."""
    counts = collections.Counter(users)
    heavy = [n for n in counts.values() if n >= 10]
    return len(counts), sum(n == 1 for n in counts.values()), len(heavy), sum(heavy)


def assert_one_line_error(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str],
                          out: Path | None = None) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    if out is not None:
        assert not out.exists() and list(out.parent.glob(f".{out.name}*")) == []


# ---------------------------------------------------------------- the rules, by hand


def test_normalised_address_is_the_address_whatever_the_display_name() -> None:
    assert normalised_address("leech@cs.unc.edu (Jon Leech)") == "leech@cs.unc.edu"
    assert normalised_address("Jon Leech <Leech@CS.unc.edu>") == "leech@cs.unc.edu"
    assert normalised_address('"Robert Knowles" <p00261@psilink.com>') == "p00261@psilink.com"
    assert normalised_address("diablo.UUCP!cboesel (Charles Boesel)") == "diablo.uucp!cboesel"
    assert normalised_address("(Rashid)") == "(rashid)"  # only a comment: it still names someone
    assert normalised_address("  David  A. Fuess ") == "david a. fuess"


def test_scaled_ranks_by_hand() -> None:
    groups = ["a", "a", "b", "a", "a", "c", "c"]
    keys = [3, 1, 5, 3, 0, 7, 2]
    # a: 0 < 1 < 3 = 3 -> ranks 0, 1, 2.5, 2.5 of 3; b alone -> 0.5; c: 2 < 7
    assert scaled_ranks(groups, keys) == [2.5 / 3, 1 / 3, 0.5, 2.5 / 3, 0.0, 1.0, 0.0]


# ---------------------------------------------------------------- 20 Newsgroups


@pytest.fixture(scope="module")
def news(shared_data: Path) -> DataFile:
    return get_reader("20news").read(shared_data / "20newsgroups", ReaderOptions())


def test_20news_authors_form_a_heavy_tail(news: DataFile) -> None:
    train_users = [news.fields["user"][i] for i in news.train_index_list]
    assert len(train_users) == 11314 and "" not in news.fields["user"]
    assert authors(train_users) == (5754, 3919, 121, 2037)


def test_20news_the_issue_counted_whole_from_lines(news: DataFile) -> None:
    """The issue's 5,801 / 3,969 / 118 / 1,988 count distinct From: lines (lower-cased), display names included:
    47 of those authors are one address written two ways (`x@y (Name)` and `Name <x@y>`, or a changed name)."""
    lines = []
    for i in news.train_index_list:
        post = news.fields["X"][i]
        line = next(line for line in post.splitlines() if line.lower().startswith("from:"))
        lines.append(line[5:].strip().lower())
    assert authors(lines) == (5801, 3969, 118, 1988)
    same_address = collections.defaultdict(set)
    for line, user in zip(lines, (news.fields["user"][i] for i in news.train_index_list)):
        same_address[user].add(line)
    assert sum(len(spellings) - 1 for spellings in same_address.values()) == 5801 - 5754


def test_20news_order_is_the_article_rank_within_its_newsgroup(news: DataFile) -> None:
    order = np.array(news.fields["order"])
    assert order.min() == 0.0 and order.max() == 1.0
    by_group = collections.defaultdict(list)
    for post, group, value in zip(news.fields["X"], news.fields["Y"], order):
        by_group[group].append((value, post))
    assert len(by_group) == 20
    # every newsgroup runs from 0 to 1; bydate's test posts are the later ones
    assert all(min(v for v, _ in posts) == 0.0 and max(v for v, _ in posts) == 1.0 for posts in by_group.values())
    assert order[news.test_index_list].mean() > 0.7 > 0.35 > order[news.train_index_list].mean()


def test_20news_order_follows_article_numbers(tmp_path: Path) -> None:
    for name, body in [("train/a.misc/9", "From: A <a@x.org>\n\nnine"), ("train/a.misc/10", "From: a@x.org (A)\n\nten"),
                       ("train/b.misc/2", "From: b@y.org\n\nb"), ("test/a.misc/11", "Subject: no sender\n\neleven")]:
        split, rest = name.split("/", 1)
        write(tmp_path / f"20news-bydate-{split}" / rest, body)
    data = get_reader("20news").read(tmp_path, ReaderOptions())
    # sorted by split, newsgroup, file name (as strings): a.misc/10, a.misc/9, b.misc/2, then test a.misc/11
    assert data.fields["user"] == ["a@x.org", "a@x.org", "b@y.org", ""]
    assert data.fields["order"] == [0.5, 0.0, 0.5, 1.0]  # 9 < 10 < 11 within a.misc; b.misc has one post


# ---------------------------------------------------------------- AESLC


def test_aeslc_users_are_the_145_mailboxes(shared_data: Path) -> None:
    data = get_reader("aeslc").read(shared_data / "aeslc" / "enron_subject_line.tar.gz", ReaderOptions())
    users = data.fields["user"]
    assert users == data.fields["source"]
    assert len(set(users)) == 145 and len({users[i] for i in data.train_index_list}) == 143
    assert "allen-p" in users
    by_mailbox = collections.defaultdict(list)
    for user, order in zip(users, data.fields["order"]):
        by_mailbox[user].append(order)
    for orders in by_mailbox.values():  # scaled mean ranks (ties share theirs): in [0, 1], averaging 1/2
        assert 0.0 <= min(orders) <= max(orders) <= 1.0
        assert np.mean(orders) == pytest.approx(0.5)


def test_aeslc_order_ranks_message_numbers_within_the_mailbox(tmp_path: Path) -> None:
    for name in ["train/ann-b_inbox_10", "train/ann-b_sent_2", "test/ann-b_inbox_3", "train/bo-c_inbox_1"]:
        write(tmp_path / f"{name}.subject", "body\n@subject\nhello\n")
    data = get_reader("aeslc").read(tmp_path, ReaderOptions())
    # train (ann-b_inbox_10, ann-b_sent_2, bo-c_inbox_1) then test (ann-b_inbox_3); ann-b's numbers 2 < 3 < 10
    assert data.fields["user"] == ["ann-b", "ann-b", "bo-c", "ann-b"]
    assert data.fields["order"] == [1.0, 0.0, 0.5, 0.5]


# ---------------------------------------------------------------- generic readers and hf


def prepare_argv(dataset: str, source: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "prepare", "--dataset", dataset, "--source", str(source), "--out", str(out),
            "--test-fraction", "0.5", *extra]


@pytest.mark.parametrize("dataset, name, content", [
    ("csv", "data.csv", "text,label,who,when,gender\na,x,u1,3,f\nb,y,u2,1.5,m\nc,x,u1,2e3,f\nd,y,u3,-1,m\n"),
    ("tsv", "data.tsv", "text\tlabel\twho\twhen\tgender\na\tx\tu1\t3\tf\nb\ty\tu2\t1.5\tm\nc\tx\tu1\t2e3\tf\n"
                        "d\ty\tu3\t-1\tm\n"),
    ("jsonl", "data.jsonl", "".join(json.dumps(row) + "\n" for row in [
        {"text": "a", "label": "x", "who": "u1", "when": 3, "gender": "f"},
        {"text": "b", "label": "y", "who": "u2", "when": 1.5, "gender": "m"},
        {"text": "c", "label": "x", "who": "u1", "when": "2e3", "gender": "f"},
        {"text": "d", "label": "y", "who": "u3", "when": -1, "gender": "m"}])),
    ("hf:csv", "data.csv", "text,label,who,when,gender\na,x,u1,3,f\nb,y,u2,1.5,m\nc,x,u1,2e3,f\nd,y,u3,-1,m\n"),
])
def test_user_time_and_group_columns_become_fields(dataset: str, name: str, content: str, tmp_path: Path) -> None:
    out = tmp_path / "out.h5"
    extra = ["--task", "text_classification"] if dataset.startswith("hf:") else []
    assert main(prepare_argv(dataset, write(tmp_path / name, content), out, "--text-column", "text",
                             "--label-column", "label", "--user-column", "who", "--time-column", "when",
                             "--group-column", "gender", *extra)) == 0
    data = read_data_file(out)
    assert data.fields["user"] == ["u1", "u2", "u1", "u3"]
    assert data.fields["order"] == [3.0, 1.5, 2000.0, -1.0]
    assert data.fields["group"] == ["f", "m", "f", "m"]


def test_seq2seq_jsonl_takes_user_and_time_columns(tmp_path: Path) -> None:
    rows = [{"source": "a b", "target": "a", "who": "u1", "t": 2}, {"source": "c d", "target": "c", "who": "u2", "t": 1}]
    source = write(tmp_path / "data.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.h5"
    assert main(prepare_argv("seq2seq-jsonl", source, out, "--user-column", "who", "--time-column", "t")) == 0
    data = read_data_file(out)
    assert (data.fields["user"], data.fields["order"]) == (["u1", "u2"], [2.0, 1.0])


@pytest.mark.parametrize("dataset, name, content, option, expected", [
    ("csv", "data.csv", "text,label,when\na,x,3\nb,y,soon\n", ["--time-column", "when"],
     "data.csv:3: column 'when' (--time-column) holds 'soon'; expected a finite number"),
    ("csv", "data.csv", "text,label,when\na,x,3\nb,y,nan\n", ["--time-column", "when"],
     "data.csv:3: column 'when' (--time-column) holds 'nan'; expected a finite number"),
    ("jsonl", "data.jsonl", '{"text": "a", "label": "x", "when": [1]}\n', ["--time-column", "when"],
     "data.jsonl:1: column 'when' (--time-column) holds '[1]'; expected a finite number"),
    ("csv", "data.csv", "text,label,who\na,x,u1\nb,y,\n", ["--user-column", "who"],
     "data.csv:3: row has no value in column 'who'"),
    ("csv", "data.csv", "text,label\na,x\n", ["--group-column", "gender"],
     "data.csv: no column 'gender' (--group-column); found columns: text, label"),
    ("hf:csv", "data.csv", "text,label,when\na,x,3\nb,y,soon\n", ["--time-column", "when", "--task",
                                                                  "text_classification"],
     "split 'train' row 1: column 'when' (--time-column) holds 'soon'"),
    ("hf:csv", "data.csv", "text,label\na,x\n", ["--user-column", "who", "--task", "text_classification"],
     "no column 'who' (--user-column)"),
])
def test_bad_user_columns_are_one_line_exit_2(dataset: str, name: str, content: str, option: list[str],
                                              expected: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.h5"
    argv = prepare_argv(dataset, write(tmp_path / name, content), out, "--text-column", "text", "--label-column",
                        "label", *option)
    assert_one_line_error(argv, expected, capsys, out)
