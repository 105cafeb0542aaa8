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
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.data_partition.partition_file import read_partition
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


# ---------------------------------------------------------------- natural partitions over users


def tiny_users_file(path: Path) -> Path:
    """8 train and 4 test examples by users a (4 train), b (3), c (1), d (test only)."""
    users = ["a", "b", "a", "c", "b", "a", "b", "a", "a", "c", "d", "b"]
    data = DataFile("text_classification", {"X": [f"text {i}" for i in range(12)], "Y": ["x", "y"] * 6,
                                             "user": users, "order": [float(i) for i in range(12)]},
                    list(range(8)), list(range(8, 12)), {"x": 0, "y": 1})
    write_data_file(data, path)
    return path


def partition_argv(data: Path, out: Path, *extra: str) -> list[str]:
    return ["partition", "--data", str(data), "--out", str(out), "--method", "natural", "--field", "user", *extra]


def test_natural_min_examples_drops_light_users_and_says_so(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tiny_users_file(tmp_path / "users.h5"), tmp_path / "part.h5"
    assert main(partition_argv(data, out, "--clients", "2", "--min-examples", "3")) == 0
    printed = capsys.readouterr().out
    assert "wrote group natural_clients=2_field=user_min_examples=3" in printed
    assert ("dropped 1 clients with fewer than 3 train examples (--min-examples): 1 train and 1 test examples "
            "are in no client") in printed
    stored = read_partition(out, "natural_clients=2_field=user_min_examples=3")
    assert [c.tolist() for c in stored.train] == [[0, 2, 5, 7], [1, 4, 6]]  # a, b; c's example 3 is dropped
    assert [c.tolist() for c in stored.test] == [[8], [11]]  # c's test example 9 dropped, d has no client
    assert (stored.values["min_examples"], stored.values["dropped_clients"], stored.values["dropped_train_examples"],
            stored.values["dropped_test_examples"]) == (3, 1, 1, 1)
    assert list(stored.values["client_names"]) in (["a", "b"], [b"a", b"b"])


def test_natural_without_min_examples_keeps_every_user_and_the_old_name(tmp_path: Path) -> None:
    data, out = tiny_users_file(tmp_path / "users.h5"), tmp_path / "part.h5"
    assert main(partition_argv(data, out, "--clients", "3")) == 0
    stored = read_partition(out, "natural_clients=3_field=user")
    assert [len(c) for c in stored.train] == [4, 3, 1] and "dropped_clients" not in stored.values


@pytest.mark.parametrize("extra, expected", [
    (["--clients", "3", "--min-examples", "3"], "has 2 distinct values over the training examples with at least 3 "
                                                "training examples (1 dropped by --min-examples), one client each: "
                                                "give --clients 2, not 3"),
    (["--clients", "3", "--min-examples", "0"], "--min-examples must be at least 1, got 0"),
    (["--clients", "1", "--min-examples", "5"], "--min-examples 5 keeps no value of field 'user'"),
])
def test_natural_min_examples_errors_are_one_line_exit_2(extra: list[str], expected: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    data, out = tiny_users_file(tmp_path / "users.h5"), tmp_path / "part.h5"
    assert_one_line_error(partition_argv(data, out, *extra), expected, capsys)
    assert not out.exists()


def test_min_examples_applies_to_natural_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tiny_users_file(tmp_path / "users.h5")
    argv = ["partition", "--data", str(data), "--out", str(tmp_path / "p.h5"), "--method", "uniform", "--clients",
            "2", "--min-examples", "2"]
    assert_one_line_error(argv, "--min-examples does not apply to --method uniform", capsys)


@pytest.fixture(scope="module")
def news_users(news: DataFile, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The real 20 Newsgroups data file partitioned over its 121 authors of ten or more posts (one client each:
    the 5,754-client partition of every author takes long to write in FedNLP's one-dataset-per-client layout)."""
    root = tmp_path_factory.mktemp("news_users")
    data, part = root / "news.h5", root / "part.h5"
    write_data_file(news, data)
    assert main(partition_argv(data, part, "--clients", "121", "--min-examples", "10")) == 0
    return data, part


def test_natural_users_on_20news_give_one_client_per_heavy_author(news: DataFile,
                                                                  news_users: tuple[Path, Path]) -> None:
    data, part = news_users
    heavy = read_partition(part, "natural_clients=121_field=user_min_examples=10")
    sizes = np.array([len(c) for c in heavy.train])
    assert sizes.min() == 10 and sizes.max() == 73 and sizes.sum() == 2037
    train_users = collections.Counter(news.fields["user"][i] for i in news.train_index_list)
    assert sorted(sizes.tolist()) == sorted(n for n in train_users.values() if n >= 10)
    assert (heavy.values["dropped_clients"], heavy.values["dropped_train_examples"]) == (5754 - 121, 11314 - 2037)
    assert all(len({news.fields["user"][i] for i in client}) == 1 for client in heavy.train)  # one author each


def test_partition_stats_reports_and_plots_client_sizes(news_users: tuple[Path, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data, part = news_users
    plot = tmp_path / "sizes.png"
    assert main(["partition-stats", "--data", str(data), "--partition", str(part), "--sizes-plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "train sizes      10-99: 121 (clients per size range); the largest 10% of clients hold" in out
    assert "min examples     dropped 5633 clients with fewer than 10 train examples" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_size_ranges_by_hand() -> None:
    from fednlp.data_partition.client_sizes import size_decades, top_decile_share

    assert size_decades(np.array([0, 1, 1, 2, 9, 10, 99, 100, 1000])) == "0: 1  1: 2  2-9: 2  10-99: 2  100-999: 1  1000-9999: 1"
    assert top_decile_share(np.array([1] * 9 + [91])) == 0.91
