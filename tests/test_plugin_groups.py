"""Task heads, dataset readers and partition methods come from entry-point groups too (`fednlp.tasks`,
`fednlp.readers`, `fednlp.partition_methods`), as docs/extending.md shows: a module of a package installed beside
fednlp, found through its entry points, with no change to fednlp. The entry points are faked here (the
installed-package path is the same code, tested for algorithms in test_plugin.py)."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from fednlp.data.readers import READERS, ReaderOptions, get_reader
from fednlp.data_partition import METHODS, PartitionParams, add_partition
from fednlp.errors import UserError
from fednlp.tasks.registry import TASKS, resolve_task

PLUGIN = '''
"""A package's plugins: a reader, a partition method and a task head."""
import numpy as np

from fednlp.data.datafile import DataFile
from fednlp.data.readers import register_reader
from fednlp.data_partition import register_method
from fednlp.data_partition.partitioners import PartitionResult
from fednlp.tasks.classification import TextClassification


@register_reader("label_tab_text", "text_classification", "one 'label<TAB>text' per line")
def read_lines(source, options):
    rows = [line.split("\\t", 1) for line in source.read_text().splitlines()]
    labels = sorted({label for label, _ in rows})
    return DataFile("text_classification", {"X": [text for _, text in rows], "Y": [label for label, _ in rows]},
                    list(range(0, len(rows), 2)), list(range(1, len(rows), 2)), {y: i for i, y in enumerate(labels)})


@register_method("round_robin", reads=())
def round_robin(job, params, rng):
    """Example i to client i mod n."""
    n = params.n_clients
    return PartitionResult([np.arange(c, len(job.train), n) for c in range(n)],
                           [np.arange(c, len(job.test), n) for c in range(n)])


class Shouting(TextClassification):
    """Classification of the same data, a head of its own (asked for with --task shout, never inferred)."""

    task_type = "shouting"
    data_task_types = ("text_classification",)
'''


@pytest.fixture
def plugin_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The plugin module on sys.path, its entry points in the three groups, the registries restored after."""
    module = f"fednlp_groups_plugin_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    points = [EntryPoint("label_tab_text", f"{module}:read_lines", "fednlp.readers"),
              EntryPoint("round_robin", module, "fednlp.partition_methods"),
              EntryPoint("shout", f"{module}:Shouting", "fednlp.tasks")]
    for registry in (READERS, METHODS, TASKS):
        monkeypatch.setattr(registry, "entries", dict(registry.load()))  # the plugin's entries go to a copy
    monkeypatch.setattr("fednlp.registry.entry_points", lambda group: [p for p in points if p.group == group])
    yield points
    sys.modules.pop(module, None)


def test_a_package_adds_a_reader_a_partition_method_and_a_task(plugin_entry_points, tmp_path: Path) -> None:
    source = tmp_path / "lines.tsv"
    source.write_text("".join(f"{'ab'[i % 3 == 0]}\ttext number {i}\n" for i in range(12)))
    data = get_reader("label_tab_text").read(source, ReaderOptions())
    assert data.n_examples == 12 and data.label_vocab == {"a": 0, "b": 1}

    from fednlp.data.datafile import write_data_file

    write_data_file(data, tmp_path / "d.h5")
    group = add_partition(tmp_path / "d.h5", tmp_path / "p.h5", PartitionParams(method="round_robin", n_clients=3))
    from fednlp.federation.clients import read_clients

    clients = read_clients(tmp_path / "p.h5", group, data.n_examples, tmp_path / "d.h5")
    assert [c.tolist() for c in clients.train] == [[0, 6], [2, 8], [4, 10]]

    head = resolve_task("shout", "text_classification", "d.h5")
    assert head.name == "shout" and head.__name__ == "Shouting"
    assert resolve_task(None, "text_classification", "d.h5").name == "classification"  # inference unchanged


def test_an_entry_point_that_registers_nothing_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty_plugin.py").write_text("x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(READERS, "entries", dict(READERS.load()))
    monkeypatch.setattr("fednlp.registry.entry_points",
                        lambda group: [EntryPoint("ghost", "empty_plugin", group)] if group == "fednlp.readers" else [])
    with pytest.raises(UserError, match="entry point ghost = empty_plugin of group fednlp.readers registers no "
                                        "dataset named 'ghost'"):
        get_reader("csv")
    sys.modules.pop("empty_plugin", None)
