"""Every raw-file reader on hypothesis-generated files: `fednlp data prepare` either writes a readable data file
(exit 0) or refuses with exactly one `fednlp: error:` line (exit 2) and leaves no file behind; it never raises.

The files are near misses of each format (right shape, wrong cells, cut or garbled bytes) more often than
noise, because near misses reach the per-record checks that noise never gets past.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fednlp.cli import main
from fednlp.data.datafile import read_data_file

#: FEDNLP_FUZZ_EXAMPLES=2000 for a long hunt; the default keeps the file under a minute.
FUZZ = settings(max_examples=int(os.environ.get("FEDNLP_FUZZ_EXAMPLES", "30")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
MODES = st.sampled_from(["error", "skip"])

#: Text with the characters that break readers: separators, quotes, line ends, NUL, non-ASCII, lone surrogates.
TRICKY = st.sampled_from([",", "\t", '"', "\n", "\r\n", "\r", " ", "\x00", "é", "\u2028", "\ufeff", "-DOCSTART-"])
TEXT = st.lists(st.one_of(st.text(max_size=6), TRICKY), max_size=4).map("".join)
WORD = st.sampled_from(["EU", "rejects", "German", "call", "a", "O", "B-ORG", "I-PER", "NNP", "B-NP", "1", "0"])
JSON_SCALARS = (st.none() | st.booleans() | st.integers(-5, 10**30) | st.floats(allow_nan=False)
                | TEXT | st.sampled_from(["\ud800", "a\udfffb"]))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


@st.composite
def garbled(draw: st.DrawFn, content: bytes) -> bytes:
    """The content, cut, with bytes put in, or gzipped (whole or cut); mostly as it is."""
    how = draw(st.sampled_from(["keep", "keep", "keep", "cut", "insert", "gzip", "gzip-cut"]))
    if how == "keep":
        return content
    if how.startswith("gzip"):
        content = gzip.compress(content)
    at = draw(st.integers(0, len(content)))
    if how == "insert":
        return content[:at] + draw(st.binary(min_size=1, max_size=4)) + content[at:]
    return content[:at]


def json_line(value: object) -> str:
    return json.dumps(value)


def prepares_or_refuses(files: dict[str, bytes], source: str, argv: list[str], mode: str) -> None:
    """Write the files, run `fednlp data prepare`, and check it either wrote a data file or refused cleanly."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        out = root / "out" / "data.h5"
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(["data", "prepare", "--source", str(root / source), "--out", str(out),
                         "--bad-records", mode, *argv])
        lines = stderr.getvalue().splitlines()
        warnings = [line for line in lines if line.startswith("fednlp: warning: ")]
        errors = [line for line in lines if not line.startswith("fednlp: warning: ")]
        if mode == "error":
            assert warnings == [], lines
        if code == 0:
            assert errors == [], lines
            data = read_data_file(out)
            skipped = data.attributes.get("skipped_records", 0)
            # Never a silent drop: one warning per skipped record, plus the final count.
            assert len(warnings) == (skipped + 1 if skipped else 0), (lines, skipped)
            assert len(data.attributes.get("skipped_locations", [])) == skipped
        else:
            assert code == 2, lines
            assert len(errors) == 1 and errors[0].startswith("fednlp: error: "), lines
            assert not out.exists()
        if out.parent.exists():
            assert [path.name for path in out.parent.iterdir() if path != out] == []  # no temporary left


# ------------------------------------------------------------------------------------------ classification

CLASSIFY = ["--text-column", "text", "--label-column", "label", "--test-fraction", "0.5"]


@st.composite
def delimited_file(draw: st.DrawFn, sep: str) -> bytes:
    header = draw(st.sampled_from([["text", "label"], ["label", "text", "g"], ["text"], ["x", "y"]]))
    rows = draw(st.lists(st.lists(st.one_of(WORD, TEXT), min_size=0, max_size=4), max_size=8))
    quote = draw(st.booleans())
    cell = (lambda c: '"' + c.replace('"', '""') + '"') if quote else (lambda c: c)
    text = "\n".join(sep.join(cell(c) for c in row) for row in [header, *rows]) + "\n"
    return draw(garbled(text.encode("utf-8", "surrogatepass")))


@st.composite
def jsonl_file(draw: st.DrawFn, keys: tuple[str, ...]) -> bytes:
    record = st.fixed_dictionaries({}, optional={key: st.one_of(WORD, JSON_VALUES) for key in keys})
    lines = draw(st.lists(st.one_of(record.map(json_line), JSON_VALUES.map(json_line), TEXT), max_size=8))
    return draw(garbled("\n".join(lines).encode("utf-8", "surrogatepass")))


@FUZZ
@given(kind=st.sampled_from(["csv", "tsv"]), data=st.data(), mode=MODES, group=st.booleans())
def test_csv_and_tsv(kind: str, data: st.DataObject, mode: str, group: bool) -> None:
    content = data.draw(delimited_file("," if kind == "csv" else "\t"))
    argv = ["--dataset", kind, *CLASSIFY, *(["--source-column", "g"] if group else [])]
    prepares_or_refuses({f"data.{kind}": content}, f"data.{kind}", argv, mode)


@FUZZ
@given(content=jsonl_file(("text", "label")), mode=MODES)
def test_jsonl(content: bytes, mode: str) -> None:
    prepares_or_refuses({"data.jsonl": content}, "data.jsonl", ["--dataset", "jsonl", *CLASSIFY], mode)


@FUZZ
@given(rows=st.lists(st.lists(st.one_of(st.sampled_from(["1", "2", "3", "4", "5", ""]), TEXT), max_size=4),
                     max_size=8),
       classes=st.booleans(), data=st.data(), mode=MODES)
def test_agnews(rows: list[list[str]], classes: bool, data: st.DataObject, mode: str) -> None:
    text = "".join(",".join('"' + c.replace('"', '""') + '"' for c in row) + "\n" for row in rows)
    files = {"ag/train.csv": data.draw(garbled(text.encode("utf-8", "surrogatepass")))}
    if classes:
        files["ag/classes.txt"] = b"World\nSports\nBusiness\nSci/Tech\n"
    prepares_or_refuses(files, "ag", ["--dataset", "agnews", "--test-fraction", "0.5"], mode)


@FUZZ
@given(posts=st.lists(st.tuples(st.sampled_from(["20news-bydate-train", "20news-bydate-test", "other"]),
                                st.sampled_from(["sci.space", "rec.autos", "a/b"]), st.binary(max_size=20)),
                      max_size=5),
       data=st.data(), mode=MODES)
def test_20news_archive(posts: list[tuple[str, str, bytes]], data: st.DataObject, mode: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for n, (folder, group, content) in enumerate(posts):
            info = tarfile.TarInfo(f"{folder}/{group}/{n}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    archive = data.draw(garbled(buffer.getvalue()))
    prepares_or_refuses({"20news-bydate.tar.gz": archive}, "20news-bydate.tar.gz", ["--dataset", "20news"], mode)


@FUZZ
@given(files=st.dictionaries(st.sampled_from(["a/1.txt", "a/2.txt", "b/1.txt", "c.txt", ".x/1.txt"]),
                             st.binary(max_size=20), max_size=4), mode=MODES)
def test_textdir(files: dict[str, bytes], mode: str) -> None:
    prepares_or_refuses({f"corpus/{name}": content for name, content in files.items()} | {"corpus/.keep": b""},
                        "corpus", ["--dataset", "textdir", "--test-fraction", "0.5"], mode)


# ------------------------------------------------------------------------------------------------ tagging


@st.composite
def column_file(draw: st.DrawFn, sep: str) -> bytes:
    line = st.one_of(st.lists(WORD, max_size=5).map(sep.join), st.just(""), st.just("-DOCSTART- -X- O O"), TEXT)
    text = "\n".join(draw(st.lists(line, max_size=12))) + draw(st.sampled_from(["", "\n"]))
    return draw(garbled(text.encode("utf-8", "surrogatepass")))


@FUZZ
@given(data=st.data(), token=st.integers(-3, 3), tag=st.integers(-3, 3), mode=MODES)
def test_conll_columns(data: st.DataObject, token: int, tag: int, mode: str) -> None:
    content = data.draw(column_file(data.draw(st.sampled_from([" ", "\t"]))))
    argv = ["--dataset", "conll", "--token-column", str(token), "--tag-column", str(tag), "--test-fraction", "0.5"]
    prepares_or_refuses({"data.txt": content}, "data.txt", argv, mode)


@FUZZ
@given(data=st.data(), mode=MODES)
def test_conll2003_and_wnut17(data: st.DataObject, mode: str) -> None:
    if data.draw(st.booleans()):
        files = {"c/train.txt": data.draw(column_file(" ")), "c/test.txt": data.draw(column_file(" "))}
        prepares_or_refuses(files, "c", ["--dataset", "conll2003"], mode)
    else:
        files = {"w/wnut17train.conll": data.draw(column_file("\t")),
                 "w/emerging.test.annotated": data.draw(column_file("\t"))}
        prepares_or_refuses(files, "w", ["--dataset", "wnut17"], mode)


# ------------------------------------------------------------------------------------------------------ QA


def sometimes(good: st.SearchStrategy) -> st.SearchStrategy:
    """The right value mostly; else any JSON value."""
    return st.one_of(good, good, good, JSON_VALUES)


@st.composite
def squad_question(draw: st.DrawFn, context: str) -> object:
    start = draw(st.integers(0, max(len(context) - 1, 0)))
    end = draw(st.integers(start, len(context)))
    answer = {"text": sometimes(st.just(context[start:end]) | TEXT), "answer_start": sometimes(st.just(start))}
    qa = {"id": sometimes(st.text(max_size=4)), "question": sometimes(TEXT),
          "answers": sometimes(st.lists(st.fixed_dictionaries(answer), max_size=2))}
    optional = {"is_impossible": st.booleans()}
    return draw(sometimes(st.fixed_dictionaries(qa, optional=optional)))


@st.composite
def squad_file(draw: st.DrawFn) -> bytes:
    articles = []
    for _ in range(draw(st.integers(0, 2))):
        paragraphs = []
        for _ in range(draw(st.integers(0, 2))):
            context = draw(TEXT)
            qas = [draw(squad_question(context)) for _ in range(draw(st.integers(0, 3)))]
            paragraphs.append(draw(sometimes(st.just({"context": context, "qas": qas}))))
        articles.append(draw(sometimes(st.just({"title": draw(sometimes(WORD)), "paragraphs": paragraphs}))))
    document = draw(sometimes(st.just({"data": articles, "version": "1.1"})))
    return draw(garbled(json.dumps(document, indent=draw(st.sampled_from([None, 1]))).encode()))


@FUZZ
@given(content=squad_file(), mode=MODES)
def test_squad(content: bytes, mode: str) -> None:
    prepares_or_refuses({"squad.json": content}, "squad.json", ["--dataset", "squad", "--test-fraction", "0.5"], mode)


@st.composite
def mrqa_file(draw: st.DrawFn) -> bytes:
    split = draw(st.sampled_from(["train", "dev"]))
    header = draw(sometimes(st.just({"header": {"dataset": "SQuAD", "split": split}})))
    lines = [json_line(header)]
    for _ in range(draw(st.integers(0, 3))):
        context = draw(TEXT)
        qas = []
        for _ in range(draw(st.integers(0, 2))):
            start = draw(st.integers(-1, len(context) + 1))
            last = draw(st.integers(start - 1, len(context) + 1))
            detected = [{"text": "x", "char_spans": draw(sometimes(st.just([[start, last]])))}]
            qa = {"qid": draw(sometimes(st.text(max_size=4))), "question": draw(sometimes(TEXT)),
                  "answers": draw(sometimes(st.lists(TEXT, max_size=2))),
                  "detected_answers": draw(sometimes(st.just(detected)))}
            qas.append(draw(sometimes(st.just(qa))))
        lines.append(json_line(draw(sometimes(st.just({"context": context, "qas": qas})))))
    if draw(st.booleans()):
        lines.append(draw(TEXT))
    return draw(garbled("\n".join(lines).encode()))


@FUZZ
@given(content=mrqa_file(), gz=st.booleans(), mode=MODES)
def test_mrqa(content: bytes, gz: bool, mode: str) -> None:
    name = "dev.jsonl.gz" if gz else "dev.jsonl"
    prepares_or_refuses({name: gzip.compress(content) if gz else content}, name,
                        ["--dataset", "mrqa", "--test-fraction", "0.5"], mode)


SUBJQA_HEADER = ["q_review_id", "question", "review", "human_ans_spans", "human_ans_indices"]


@st.composite
def subjqa_file(draw: st.DrawFn) -> bytes:
    rows = [draw(sometimes(st.just(SUBJQA_HEADER)).filter(lambda row: isinstance(row, list)))]
    for _ in range(draw(st.integers(0, 5))):
        review = draw(st.sampled_from(["Great battery life ANSWERNOTFOUND", "Bad screen", ""]))
        start = draw(st.integers(0, 40))
        indices = draw(st.sampled_from([f"({start}, {start + 4})", f"({start + 4}, {start})", "x", "(1,2"]))
        spans = draw(st.sampled_from(["ANSWERNOTFOUND", "battery", ""]))
        row = [draw(st.sampled_from(["q1", "q2"])), draw(TEXT), review, spans, indices]
        rows.append(row[:draw(st.integers(3, 6))])
    text = "".join(",".join('"' + str(c).replace('"', '""') + '"' for c in row) + "\n" for row in rows)
    return draw(garbled(text.encode("utf-8", "surrogatepass")))


@FUZZ
@given(train=subjqa_file(), test=subjqa_file(), mode=MODES)
def test_subjqa(train: bytes, test: bytes, mode: str) -> None:
    files = {"books/splits/train.csv": train, "books/splits/test.csv": test}
    prepares_or_refuses(files, "books", ["--dataset", "subjqa"], mode)


# ------------------------------------------------------------------------------------------------- seq2seq


@FUZZ
@given(content=jsonl_file(("source", "target")), scitldr=st.booleans(), mode=MODES)
def test_seq2seq_jsonl(content: bytes, scitldr: bool, mode: str) -> None:
    dataset = "scitldr" if scitldr else "seq2seq-jsonl"
    prepares_or_refuses({"train.jsonl": content}, "train.jsonl", ["--dataset", dataset, "--test-fraction", "0.5"],
                        mode)


@FUZZ
@given(articles=st.lists(TEXT, max_size=6), titles=st.lists(TEXT, max_size=6), data=st.data(), mode=MODES)
def test_gigaword_line_aligned(articles: list[str], titles: list[str], data: st.DataObject, mode: str) -> None:
    encode = lambda lines: data.draw(garbled("\n".join(lines).encode("utf-8", "surrogatepass")))  # noqa: E731
    files = {"g/train.article.txt": encode(articles), "g/train.title.txt": encode(titles)}
    prepares_or_refuses(files, "g", ["--dataset", "gigaword", "--test-fraction", "0.5"], mode)


@FUZZ
@given(emails=st.lists(st.tuples(st.sampled_from(["train", "dev", "test", "other"]),
                                 st.sampled_from(["Body\n\n@subject\nHi\n", "Body only\n", "@subject\n",
                                                  "x\n@subject\ns\n@ann0\na\n", "\xff\x00"]),
                                 st.binary(max_size=3)), max_size=5),
       archive=st.booleans(), data=st.data(), mode=MODES)
def test_aeslc(emails: list[tuple[str, str, bytes]], archive: bool, data: st.DataObject, mode: str) -> None:
    members = {f"enron/{split}/u_inbox_{n}.subject": text.encode("latin-1") + noise
               for n, (split, text, noise) in enumerate(emails)}
    if not archive:
        prepares_or_refuses(members, "enron", ["--dataset", "aeslc"], mode)
        return
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    files = {"aeslc.tar.gz": data.draw(garbled(buffer.getvalue()))}
    prepares_or_refuses(files, "aeslc.tar.gz", ["--dataset", "aeslc"], mode)


# ---------------------------------------------------------------------------- hf: the `datasets` local builders

#: `datasets` takes about half a second a call: fewer examples.
HF_FUZZ = settings(FUZZ, max_examples=max(FUZZ.max_examples // 3, 5))
HF_KEYS = ("text", "label", "tokens", "ner_tags", "context", "question", "answers", "source", "target")


@HF_FUZZ
@given(kind=st.sampled_from(["csv", "json"]), data=st.data(), mode=MODES,
       task=st.sampled_from(["text_classification", "sequence_tagging", "span_extraction", "seq2seq"]))
def test_hf_local_files(kind: str, data: st.DataObject, mode: str, task: str) -> None:
    content = data.draw(delimited_file(",") if kind == "csv" else jsonl_file(HF_KEYS))
    argv = ["--dataset", f"hf:{kind}", "--task", task, "--test-fraction", "0.5"]
    prepares_or_refuses({f"data.{kind}": content}, f"data.{kind}", argv, mode)
