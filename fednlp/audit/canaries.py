"""`fednlp canaries insert`: a copy of a data file and partition group with canaries in some clients' data.

A canary (Carlini et al. 2019, "The Secret Sharer") is a template sentence with a random secret, e.g. "my pin
code is 4 0 9 1", inserted `repeats` times into the training data. Text classification: the filled template
is a text with the chosen --label. Seq2seq: the source is the template without its secret, the target the
filled template, so the secret is only ever in a target (what the model must learn to produce); with
`--task lm` (an LM reads only the source text) the filled template is the source (and the target). The data
file records which field holds the secret (`secret_field`), and the audit refuses a run whose head never
reads that field (Task.reads_fields): it would score texts the model never saw. `--count K`
canaries are drawn for each repeat count, each with its own distinct secret; `--clients one` puts all copies
of a canary into one client (each canary another client), `spread` spreads them over up to `repeats`
distinct clients.

The new data file lists the canaries (secret, repeats, clients, examples) in its attributes under
`canaries`: training reads only the fields, so the secrets stay hidden from it and the audit finds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fednlp.audit.secrets import SecretSpace, check_template, fill, parse_secret_space
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.data_partition.partition_file import (StoredPartition, find_group, partition_content, read_partition,
                                                  write_groups)
from fednlp.errors import UserError
from fednlp.files import file_sha256
from fednlp.run.random_streams import AuditStream, run_rng

CLIENT_MODES = ("one", "spread")


@dataclass(frozen=True)
class CanaryRows:
    """How a canary becomes a row (X, Y) of a data file of one task_type. Insertion writes data files and
    involves no task head, so this keys on the data file's task_type (as partitioning does)."""

    texts: Callable[[str, str, str | None], tuple[str, str]]  # (template, secret, label) -> (X, Y)
    needs_label: bool  # the canary's row has a label: --label is required, else refused
    secret_field: str  # the data-file field that holds the secret


def _labelled_text(template: str, secret: str, label: str | None) -> tuple[str, str]:
    """Classification: the filled template is the text, --label its label."""
    return fill(template, secret), str(label)


def _secret_in_target(template: str, secret: str, label: str | None) -> tuple[str, str]:
    """Seq2seq: the source is the template without its secret, the target the filled template, so the secret
    is only ever in a target (what the model must learn to produce)."""
    return " ".join(template.replace("{secret}", " ").split()), fill(template, secret)


def _secret_in_source(template: str, secret: str, label: str | None) -> tuple[str, str]:
    """Seq2seq data for a head that reads the source alone (lm): the filled template is the source, and the
    target too (a seq2seq run on the same file then learns to copy it)."""
    return fill(template, secret), fill(template, secret)


#: data file task_type -> its placements, the default first (the others serve heads that never read its field).
PLACEMENTS = {
    "text_classification": (CanaryRows(_labelled_text, True, "X"),),
    "seq2seq": (CanaryRows(_secret_in_target, False, "Y"), CanaryRows(_secret_in_source, False, "X")),
}
ROWS = {task_type: placements[0] for task_type, placements in PLACEMENTS.items()}


def placement(task_type: str, secret_field: str | None = None) -> CanaryRows:
    """The placement of a data file's canaries: the one recorded (`secret_field`), or the task type's default
    (data files made before the field was recorded)."""
    return next((p for p in PLACEMENTS[task_type] if p.secret_field == secret_field), ROWS[task_type])


def placement_for(task_type: str, head: Any) -> CanaryRows:
    """`--task NAME` of `canaries insert`: the first placement whose secret lies where the head reads."""
    if not head.scores_canaries:
        raise UserError(f"--task {head.name}: a {head.name} model does not score canary texts")
    for rows in PLACEMENTS[task_type]:
        if rows.secret_field in head.reads_fields:
            return rows
    raise UserError(f"--task {head.name}: canaries in {task_type} data lie in fields "
                    f"{', '.join(p.secret_field for p in PLACEMENTS[task_type])}; a {head.name} model reads "
                    f"{', '.join(head.reads_fields)}")


def check_head_reads(record: dict[str, Any], task_type: str, head: Any, data_path: Any) -> str:
    """The field holding the canaries' secret, refused (one line) when the run's head never reads it."""
    field = placement(task_type, record.get("secret_field")).secret_field
    if field not in head.reads_fields:
        raise UserError(f"--canaries: the canaries of data file {data_path} hold their secret in its {field} field, "
                        f"which a {head.name} model never reads ({', '.join(head.reads_fields)}): the run never saw "
                        f"them; insert canaries for it with: fednlp canaries insert --task {head.name}")
    return field


@dataclass(frozen=True)
class CanaryOptions:
    """`fednlp canaries insert`: where from, where to, and which canaries (see the module docstring)."""

    data: str
    partition: str
    method: str  # the partition group
    out_data: str
    out_partition: str
    template: str
    secret: str  # the secret space: digits:N or a file of candidates
    repeats: tuple[int, ...] = (1, 10, 100)
    clients: str = "one"
    label: str | None = None
    count: int = 1  # canaries per repeat count
    seed: int = 0
    task: str | None = None  # the head the canaries are for (--task): where its secret must lie

    @property
    def copies(self) -> list[int]:
        """Each canary's number of copies, canary by canary."""
        return [r for r in self.repeats for _ in range(self.count)]

    def validate(self) -> None:
        """The checks that need no file read."""
        check_template(self.template)
        if self.clients not in CLIENT_MODES:
            raise UserError(f"--clients {self.clients!r}: expected one of {', '.join(CLIENT_MODES)}")
        if self.count < 1:
            raise UserError(f"--count {self.count}: expected at least 1 canary per repeat count")
        if self.seed < 0:
            raise UserError(f"--seed {self.seed}: expected 0 or more")
        for flag, given, source in (("--out-data", self.out_data, self.data),
                                    ("--out-partition", self.out_partition, self.partition)):
            if Path(given).resolve() == Path(source).resolve():
                raise UserError(f"{flag} {given} is the input file itself; write the canaried copy elsewhere")
        if Path(self.out_data).exists():
            raise UserError(f"--out-data {self.out_data} already exists; choose another path")


@dataclass
class Canaried:
    """The copy being made: the data file's fields and the group's training lists, canaries added."""

    fields: dict[str, list[Any]]
    train: list[list[int]]
    records: list[dict[str, Any]]


def parse_repeats(text: str) -> tuple[int, ...]:
    try:
        repeats = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UserError(f"--repeats {text!r}: expected comma-separated positive whole numbers, e.g. 1,10,100") from None
    if not repeats or min(repeats) < 1:
        raise UserError(f"--repeats {text!r}: expected comma-separated positive whole numbers, e.g. 1,10,100")
    return repeats


def canary_texts(task_type: str, template: str, secret: str, label: str | None,
                 secret_field: str | None = None) -> tuple[str, str]:
    """(X, Y) of a canary example in a data file of `task_type`, its secret in `secret_field` (None: the
    default placement)."""
    return placement(task_type, secret_field).texts(template, secret, label)


def insert_canaries(options: CanaryOptions) -> dict[str, Any]:
    """Check everything, then write out_data and the group `method` of out_partition; returns a summary."""
    options.validate()
    space = parse_secret_space(options.secret)
    data = read_data_file(options.data)
    check_data(data, options)
    rows = _placement_of(data.task_type, options)
    group = find_group(options.partition, options.method)
    stored = read_partition(options.partition, group)
    check_room(space, group, stored.n_clients, options)
    canaried = place_canaries(data, stored, space, options, rows)
    write_canaried(data, stored, group, canaried, space, options, rows)
    return {"group": group, "n_canaries": len(canaried.records), "secret_space_size": space.size,
            "n_examples_added": sum(len(r["examples"]) for r in canaried.records)}


def check_data(data: DataFile, options: CanaryOptions) -> None:
    rows = ROWS.get(data.task_type)
    if rows is None:
        raise UserError(f"data file {options.data} holds {data.task_type} data; canaries go into "
                        f"{' or '.join(ROWS)} data")
    if "canaries" in data.attributes:
        raise UserError(f"data file {options.data} already holds canaries; insert them into the original data file")
    if rows.needs_label and options.label not in data.label_vocab:
        given = "no --label given" if options.label is None else f"--label {options.label!r}"
        raise UserError(f"{given}: a canary of {data.task_type} data needs --label, one of the data file's labels "
                        f"({', '.join(sorted(data.label_vocab)[:20])})")
    if not rows.needs_label and options.label is not None:
        raise UserError(f"--label is for text classification; a {data.task_type} canary's secret is in its target")


def _placement_of(task_type: str, options: CanaryOptions) -> CanaryRows:
    """The default placement, or with --task the one whose secret the head reads."""
    if options.task is None:
        return ROWS[task_type]
    from fednlp.tasks.registry import resolve_task

    return placement_for(task_type, resolve_task(options.task, task_type, options.data))


def check_room(space: SecretSpace, group: str, n_clients: int, options: CanaryOptions) -> None:
    """Distinct secrets for every canary, and with --clients one a client of its own for each."""
    n_canaries = len(options.copies)
    if n_canaries > space.size:
        raise UserError(f"{n_canaries} canaries need distinct secrets, but --secret {options.secret} has {space.size}")
    if options.clients == "one" and n_canaries > n_clients:
        raise UserError(f"--clients one puts each of the {n_canaries} canaries (--count {options.count} x "
                        f"{len(options.repeats)} repeat counts) into its own client, but {group!r} has {n_clients} "
                        "clients")


def place_canaries(data: DataFile, stored: StoredPartition, space: SecretSpace, options: CanaryOptions,
                   rows: CanaryRows | None = None) -> Canaried:
    """Each canary's secret and clients drawn (named streams of --seed), its copies appended to the fields
    and to its clients' training lists."""
    copies = options.copies
    secrets = _distinct_indices(run_rng(options.seed, AuditStream.CANARY_SECRETS), space.size, len(copies))
    homes = canary_clients(run_rng(options.seed, AuditStream.CANARY_CLIENTS), stored.n_clients, copies, options.clients)
    canaried = Canaried({name: list(values) for name, values in data.fields.items()}, [list(t) for t in stored.train],
                        [])
    next_index = data.n_examples
    for k, (secret, clients) in enumerate(zip(secrets, homes)):
        text = space.candidate(secret)
        x, y = (rows or ROWS[data.task_type]).texts(options.template, text, options.label)
        examples = list(range(next_index, next_index + len(clients)))
        next_index += len(clients)
        for example, client in zip(examples, clients):
            _append_example(canaried.fields, x, y)
            canaried.train[client].append(example)
        canaried.records.append({"id": k, "secret": text, "secret_index": int(secret), "repeats": len(clients),
                                 "clients": sorted(set(clients)), "examples": examples})
    return canaried


def canary_clients(rng: np.random.Generator, n_clients: int, copies: list[int], mode: str) -> list[list[int]]:
    """The client of each copy of each canary: one: a client of its own per canary; spread: its copies over up
    to `copies` distinct clients, in turn."""
    if mode == "one":
        own = rng.choice(n_clients, size=len(copies), replace=False)
        return [[int(client)] * n for client, n in zip(own, copies)]
    homes = []
    for n in copies:
        distinct = rng.choice(n_clients, size=min(n, n_clients), replace=False)
        homes.append([int(distinct[i % len(distinct)]) for i in range(n)])
    return homes


def write_canaried(data: DataFile, stored: StoredPartition, group: str, canaried: Canaried, space: SecretSpace,
                   options: CanaryOptions, rows: CanaryRows | None = None) -> None:
    """The new data file (its attributes list the canaries), then the group in the new partition file; no
    data file is left without its group."""
    canary_indices = [e for r in canaried.records for e in r["examples"]]
    attributes = {**data.attributes, "canaries": {
        "template": options.template, "secret_space": space.to_json(), "label": options.label,
        "secret_field": (rows or ROWS[data.task_type]).secret_field, "task": options.task,
        "clients": options.clients, "count": options.count, "repeats": list(options.repeats), "seed": options.seed,
        "source_data_sha256": file_sha256(str(options.data)), "canaries": canaried.records,
    }}
    write_data_file(DataFile(task_type=data.task_type, fields=canaried.fields,
                             train_index_list=[*data.train_index_list, *canary_indices],
                             test_index_list=list(data.test_index_list), label_vocab=data.label_vocab,
                             attributes=attributes), options.out_data)
    try:
        values = {k: v for k, v in stored.values.items() if k != "n_clients" and np.ndim(v) == 0}
        values["data_sha256"] = file_sha256(str(options.out_data))
        train = [np.sort(np.asarray(t, dtype=np.int64)) for t in canaried.train]
        write_groups(options.out_partition, {group: partition_content(train, stored.test, values)},
                     remedy="canaries insert never replaces such a group: choose another --out-partition")
    except BaseException:
        Path(options.out_data).unlink(missing_ok=True)  # no half-written pair: the data file alone is useless
        raise


def _distinct_indices(rng: np.random.Generator, size: int, k: int) -> np.ndarray:
    """k distinct indices of range(size), even when size is too large to enumerate."""
    if size <= 10**7:
        return rng.choice(size, size=k, replace=False)
    chosen: list[int] = []
    while len(chosen) < k:
        value = int(rng.integers(size))
        if value not in chosen:
            chosen.append(value)
    return np.array(chosen, dtype=np.int64)


def _append_example(fields: dict[str, list[Any]], x: str, y: str) -> None:
    """A canary row in every field: X and Y, references [Y]; other fields get their kind's empty value."""
    for name, values in fields.items():
        if name == "X":
            values.append(x)
        elif name == "Y":
            values.append(y)
        elif name == "references":
            values.append([y])
        elif values and isinstance(values[0], (list, tuple)):
            values.append([])
        elif values and isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            values.append(0.0)
        else:
            values.append("")


def canary_record(data: DataFile, data_path: str | os.PathLike) -> tuple[dict[str, Any], SecretSpace]:
    """The canaries a data file's attributes list, and their secret space; one line if there are none."""
    record = data.attributes.get("canaries")
    if not isinstance(record, dict) or not record.get("canaries"):
        raise UserError(f"data file {data_path} holds no canaries (attributes.canaries); make one with "
                        "`fednlp canaries insert` and train on it")
    return record, SecretSpace.from_json(record["secret_space"])
