"""The runtime: cohorts, FedAvg aggregation, one process vs mpirun -n 2, and the errors of `fednlp train`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.cli import main
from fednlp.config import TrainConfig, config_dict
from fednlp.federation.clients import read_clients
from fednlp.algorithms.samplers import UniformSampler
from fednlp.federation.cohort import assign_to_ranks
from fednlp.federation.communicator import LocalCommunicator
from fednlp.run.local_training import batch_plan
from fednlp.federation.runtime import Federation
from fednlp.run.random_streams import round_rng
from fednlp.run.session import open_session
from fednlp.algorithms.fedavg import FedAvg
from mpi_helpers import run_script
METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)


def _config(bbc, tmp_path: Path, **overrides) -> TrainConfig:
    data, part = bbc
    values = dict(data=str(data), partition=str(part), method=METHOD, model="tiny-bert", rounds=2,
                  clients_per_round=4, local_steps=3, batch_size=8, lr=0.05, optimizer="sgd", max_seq_length=32,
                  eval_max_examples=64, out=str(tmp_path / "run"), seed=3)
    values.update(overrides)
    config = TrainConfig(**values)
    config.validate()
    return config


def test_cohort_is_a_pure_function_of_seed_and_round() -> None:
    sizes, sample = np.ones(100, dtype=np.int64), UniformSampler().sample
    a = sample(7, 3, sizes, 10)
    assert np.array_equal(a, sample(7, 3, sizes, 10))
    assert len(set(a.tolist())) == 10 and a.max() < 100
    assert not np.array_equal(a, sample(7, 4, sizes, 10))


def test_assignment_covers_the_cohort_once_and_balances_by_size() -> None:
    sizes = np.array([100, 90, 50, 40, 30, 10, 5, 5])
    cohort = np.arange(8)
    ranks = assign_to_ranks(cohort, sizes, 3)
    assert sorted(c for r in ranks for c in r) == list(range(8))
    # Largest first to the least-loaded rank (ties to the lower rank), worked by hand:
    assert ranks == [[0, 6], [1, 4], [2, 3, 5, 7]]
    assert [int(sizes[r].sum()) for r in ranks] == [105, 120, 105]


def test_batch_plan_epochs_and_steps() -> None:
    rng = np.random.default_rng(0)
    one_epoch = batch_plan(10, 4, rng, epochs=1)
    assert [len(b) for b in one_epoch] == [4, 4, 2]
    assert sorted(np.concatenate(one_epoch).tolist()) == list(range(10))
    assert len(batch_plan(10, 4, rng, steps=7)) == 7
    assert len(batch_plan(10, 4, rng, epochs=2.5)) == 8


def test_fedavg_round_equals_the_explicit_weighted_average(bbc, tmp_path: Path) -> None:
    """One round with every client: the new global model is sum(n_k * w_k) / sum(n_k) of the local models."""
    config = _config(bbc, tmp_path, rounds=1, clients_per_round=12)
    session = open_session(config, LocalCommunicator(), "x")
    clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
    federation = Federation(session, FedAvg(config), clients)
    start = federation.global_flat.clone()

    local_models, weights = [], []
    for client in range(clients.n_clients):
        rows = federation.data.rows(client, 0)
        federation.flat.flat.copy_(start)
        rng = round_rng(config.seed, 0, 1, client)
        torch.manual_seed(int(rng.integers(2**62)))
        federation.trainer.reset_optimizer()
        federation.trainer.train(rows, batch_plan(len(rows), config.batch_size, rng, steps=config.local_steps))
        local_models.append(federation.flat.flat.clone().double())
        weights.append(len(clients.train[client]))
    expected = sum(w * m for w, m in zip(weights, local_models)) / sum(weights)

    federation.flat.flat.copy_(start)
    federation.run_round(0)
    assert not torch.allclose(federation.global_flat.double(), start.double())
    torch.testing.assert_close(federation.global_flat.double(), expected, rtol=0, atol=2e-6)


def _run_dump(config: TrainConfig, out: Path, ranks: int) -> dict:
    run_script("federated_dump.py", [json.dumps(config_dict(config)), str(out)], ranks)
    return json.loads(Path(str(out) + ".json").read_text())


def test_two_ranks_give_the_single_process_metrics_and_weights(bbc, tmp_path: Path) -> None:
    one = _run_dump(_config(bbc, tmp_path, out=str(tmp_path / "r1"), overwrite=True), tmp_path / "w1.npy", 1)
    two = _run_dump(_config(bbc, tmp_path, out=str(tmp_path / "r2"), overwrite=True), tmp_path / "w2.npy", 2)
    np.testing.assert_allclose(np.load(tmp_path / "w2.npy"), np.load(tmp_path / "w1.npy"), rtol=0, atol=1e-5)
    for name, value in one["metrics"].items():
        assert two["metrics"][name] == pytest.approx(value, abs=1e-5)
    # Every rank computed the same cohorts and the same spread, and the spread covers each cohort once.
    rank0, rank1 = two["plans"]
    assert rank0 == rank1
    for plan in rank0:
        assert sorted(c for clients in plan["assignment"] for c in clients) == plan["cohort"]
    result = json.loads((tmp_path / "r2" / "result.json").read_text())
    assert result["world_size"] == 2 and result["algorithm"] == "fedavg"


def test_train_writes_the_run_files(bbc, tmp_path: Path) -> None:
    data, part = bbc
    out = tmp_path / "run"
    code = main(["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
                 "--rounds", "2", "--clients-per-round", "3", "--local-steps", "2", "--batch-size", "8",
                 "--max-seq-length", "32", "--eval-every", "1", "--eval-max-examples", "32", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    for key in ("task", "dataset", "partition_method", "algorithm", "model", "rounds", "clients_per_round",
                "world_size", "metric", "value", "best_value", "wall_time_s", "seed"):
        assert key in result, key
    assert result["metric"] == "accuracy" and result["partition_method"] == METHOD
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2]
    assert result["value"] == lines[-1]["accuracy"] and result["best_value"] == max(l["accuracy"] for l in lines)
    assert (out / "config.yaml").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--method": "uniform_clients=99"}, "has no partition 'uniform_clients=99'"),
        ({"--task": "tagging"}, "--task"),
        ({"--data": "/nonexistent/d.h5"}, "does not exist"),
        ({"--clients-per-round": "13"}, "exceeds the 12 clients"),
        ({"--algorithm": "fedbogus"}, "--algorithm 'fedbogus' is not a known algorithm; known: fedadagrad, fedadam, fedavg,"),
        ({"--sampler": "bogus"}, "--sampler 'bogus' is not a known sampler; known: activity, poisson, uniform, uniform_ht"),
        ({"--algorithm": "fedadam"}, "--algorithm fedadam needs --server-lr"),
        ({"--algorithm": "fedprox"}, "--algorithm fedprox needs --mu"),
        ({"--algorithm": "fedopt", "--server-lr": "1", "--server-optimizer": "lbfgs"}, "--server-optimizer 'lbfgs'"),
        ({"--algorithm": "fedadam", "--server-lr": "0.1", "--beta2": "1.0"}, "--beta2 must be in [0, 1)"),
        ({"--beta2": "0.5"}, "--beta2 is not an option of --algorithm fedavg"),  # the adaptive servers' option
        ({"--lr": "-1"}, "--lr must be positive"),
        ({"--max-seq-length": "2"}, "special tokens"),
    ],
)
def test_bad_training_input_is_one_line_exit_2(bbc, tmp_path: Path, capsys, change, message) -> None:
    data, part = bbc
    args = {"--data": str(data), "--partition": str(part), "--method": METHOD, "--model": "tiny-bert",
            "--rounds": "1", "--clients-per-round": "2", "--local-steps": "1", "--out": str(tmp_path / "run")}
    args.update(change)
    code = main(["train", *[x for kv in args.items() for x in kv]])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run" / "result.json").exists()


def test_finished_run_is_not_overwritten_without_the_flag(bbc, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{}")
    data, part = bbc
    code = main(["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--out", str(out)])
    assert code == 2 and "already holds a finished run" in capsys.readouterr().err
    assert (out / "result.json").read_text() == "{}"


def test_sparse_embedding_updates_equal_dense_updates(bbc, tmp_path: Path) -> None:
    """The sparse word-embedding path (only touched rows copied and accumulated) is exact, not approximate."""
    from fednlp.federation.client_updates import DenseClientUpdates

    config = _config(bbc, tmp_path, rounds=2, clients_per_round=6)
    results = []
    for sparse in (True, False):
        session = open_session(config, LocalCommunicator(), "x")
        clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
        federation = Federation(session, FedAvg(config), clients)
        assert federation.sparse  # SGD without weight decay, FedAvg, untied embeddings
        if not sparse:
            federation.sparse = False
            federation.client_updates = DenseClientUpdates(federation.flat, federation.global_flat)
        for round_idx in range(2):
            federation.run_round(round_idx)
        results.append(federation.global_flat.clone())
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=1e-7)


def test_sparse_path_is_off_where_it_would_not_be_exact(bbc, tmp_path: Path) -> None:
    session = open_session(_config(bbc, tmp_path, weight_decay=0.01), LocalCommunicator(), "x")
    clients = read_clients(str(bbc[1]), METHOD, session.data.n_examples, str(bbc[0]))
    assert not Federation(session, FedAvg(session.config), clients).sparse  # weight decay moves every row


def test_frozen_layers_are_neither_trained_nor_communicated(bbc, tmp_path: Path) -> None:
    config = _config(bbc, tmp_path, rounds=1, freeze_layers=1)
    session = open_session(config, LocalCommunicator(), "x")
    bert = session.model.bert
    frozen = [*bert.embeddings.parameters(), *bert.encoder.layer[0].parameters()]
    assert all(not p.requires_grad for p in frozen)
    before = [p.detach().clone() for p in frozen]
    clients = read_clients(config.partition, config.method, session.data.n_examples, config.data)
    federation = Federation(session, FedAvg(config), clients)
    trainable = sum(p.numel() for p in session.model.parameters() if p.requires_grad)
    assert federation.flat.numel == trainable < sum(p.numel() for p in session.model.parameters())
    start = federation.global_flat.clone()
    federation.run_round(0)
    assert all(torch.equal(p, b) for p, b in zip(frozen, before))
    assert not torch.equal(federation.global_flat, start)
    assert all(p.requires_grad for p in bert.encoder.layer[1].parameters())
