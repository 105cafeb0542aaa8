"""`fednlp canaries insert`: a copy of a data file and partition group with canaries in some clients' data.

A canary (Carlini et al. 2019, "The Secret Sharer") is a template sentence with a random secret, e.g. "my pin
code is 4 0 9 1", inserted `repeats` times into the training data. Text classification: the filled template
is a text with the chosen --label. Seq2seq: the source is the template without its secret, the target the
filled template, so the secret is only ever in a target (what the model must learn to produce). `--count K`
canaries are drawn for each repeat count, each with its own distinct secret; `--clients one` puts all copies
of a canary into one client (each canary another client), `spread` spreads them over up to `repeats`
distinct clients.

The new data file lists the canaries (secret, repeats, clients, examples) in its attributes under
`canaries`: training reads only the fields, so the secrets stay hidden from it and the audit finds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from fednlp.audit.secrets import SecretSpace, check_template, fill, parse_secret_space
from fednlp.data.datafile import DataFile, read_data_file, write_data_file
from fednlp.files import file_sha256
from fednlp.data_partition.partition_file import find_group, partition_content, read_partition, write_groups
from fednlp.errors import UserError

CLIENT_MODES = ("one", "spread")
SUPPORTED_TASK_TYPES = ("text_classification", "seq2seq")
SECRET_STREAM, CLIENT_STREAM = 0, 1


def parse_repeats(text: str) -> list[int]:
    try:
        repeats = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--repeats {text!r}: expected comma-separated positive whole numbers, e.g. 1,10,100") from None
    if not repeats or min(repeats) < 1:
        raise UserError(f"--repeats {text!r}: expected comma-separated positive whole numbers, e.g. 1,10,100")
    return repeats


def canary_texts(task_type: str, template: str, secret: str, label: str | None) -> tuple[str, str]:
    """(X, Y) of a canary example: classification (filled template, label); seq2seq (template without the
    secret, filled template)."""
    if task_type == "seq2seq":
        return " ".join(template.replace("{secret}", " ").split()), fill(template, secret)
    return fill(template, secret), str(label)


def insert_canaries(data_path: str, partition_path: str, method: str, out_data: str, out_partition: str,
                    template: str, secret: str, repeats: list[int], clients: str, label: str | None, count: int,
                    seed: int) -> dict[str, Any]:
    """Check everything, then write out_data and the group `method` of out_partition; returns the record."""
    check_template(template)
    if clients not in CLIENT_MODES:
        raise UserError(f"--clients {clients!r}: expected one of {', '.join(CLIENT_MODES)}")
    if count < 1:
        raise UserError(f"--count {count}: expected at least 1 canary per repeat count")
    if seed < 0:
        raise UserError(f"--seed {seed}: expected 0 or more")
    for flag, given, source in (("--out-data", out_data, data_path), ("--out-partition", out_partition, partition_path)):
        if Path(given).resolve() == Path(source).resolve():
            raise UserError(f"{flag} {given} is the input file itself; write the canaried copy elsewhere")
    if Path(out_data).exists():
        raise UserError(f"--out-data {out_data} already exists; choose another path")
    space = parse_secret_space(secret)
    data = read_data_file(data_path)
    if data.task_type not in SUPPORTED_TASK_TYPES:
        raise UserError(f"data file {data_path} holds {data.task_type} data; canaries go into "
                        f"{' or '.join(SUPPORTED_TASK_TYPES)} data")
    if "canaries" in data.attributes:
        raise UserError(f"data file {data_path} already holds canaries; insert them into the original data file")
    if data.task_type == "text_classification" and label not in data.label_vocab:
        raise UserError(f"--label {label!r}: expected one of the data file's labels "
                        f"({', '.join(sorted(data.label_vocab)[:20])})")
    if data.task_type == "seq2seq" and label is not None:
        raise UserError("--label is for text classification; a seq2seq canary's secret is in its target")
    group = find_group(partition_path, method)
    stored = read_partition(partition_path, group)
    n_canaries = count * len(repeats)
    if n_canaries > space.size:
        raise UserError(f"{n_canaries} canaries need distinct secrets, but --secret {secret} has {space.size}")
    if clients == "one" and n_canaries > stored.n_clients:
        raise UserError(f"--clients one puts each of the {n_canaries} canaries (--count {count} x {len(repeats)} "
                        f"repeat counts) into its own client, but {group!r} has {stored.n_clients} clients")

    secret_rng = np.random.default_rng([seed, SECRET_STREAM])
    client_rng = np.random.default_rng([seed, CLIENT_STREAM])
    secrets = _distinct_indices(secret_rng, space.size, n_canaries)
    own_clients = client_rng.choice(stored.n_clients, size=n_canaries, replace=False) if clients == "one" else None
    fields = {name: list(values) for name, values in data.fields.items()}
    train = [list(t) for t in stored.train]
    records = []
    next_index = data.n_examples
    for k in range(n_canaries):
        copies = repeats[k // count]
        if own_clients is not None:
            homes = [int(own_clients[k])] * copies
        else:
            distinct = client_rng.choice(stored.n_clients, size=min(copies, stored.n_clients), replace=False)
            homes = [int(distinct[i % len(distinct)]) for i in range(copies)]
        text = space.candidate(secrets[k])
        x, y = canary_texts(data.task_type, template, text, label)
        examples = list(range(next_index, next_index + copies))
        next_index += copies
        for example, home in zip(examples, homes):
            _append_example(fields, x, y)
            train[home].append(example)
        records.append({"id": k, "secret": text, "secret_index": int(secrets[k]), "repeats": copies,
                        "clients": sorted(set(homes)), "examples": examples})

    canary_indices = [e for r in records for e in r["examples"]]
    attributes = {**data.attributes, "canaries": {
        "template": template, "secret_space": space.to_json(), "label": label, "clients": clients,
        "count": count, "repeats": repeats, "seed": seed, "source_data_sha256": file_sha256(str(data_path)),
        "canaries": records,
    }}
    canaried = DataFile(task_type=data.task_type, fields=fields,
                        train_index_list=[*data.train_index_list, *canary_indices],
                        test_index_list=list(data.test_index_list), label_vocab=data.label_vocab,
                        attributes=attributes)
    write_data_file(canaried, out_data)
    try:
        values = {k: v for k, v in stored.values.items() if k != "n_clients" and np.ndim(v) == 0}
        values["data_sha256"] = file_sha256(str(out_data))
        content = partition_content([np.sort(np.asarray(t, dtype=np.int64)) for t in train], stored.test, values)
        write_groups(out_partition, {group: content})
    except BaseException:
        Path(out_data).unlink(missing_ok=True)  # no half-written pair: the data file alone is useless
        raise
    return {"group": group, "n_canaries": n_canaries, "n_examples_added": len(canary_indices),
            "secret_space_size": space.size}


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
