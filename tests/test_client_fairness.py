"""Fairness across clients: the per-client statistics, per-client evaluation of a real run, q-FedAvg."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp.algorithms.qfedavg import QFedAvg
from fednlp.cli import main
from fednlp.config import TrainConfig
from fednlp.fairness.client_stats import client_statistics
from fednlp.algorithms.interface import ClientUpdate
from fednlp.federation.round_plan import make_context

METHOD = "niid_label_clients=12_alpha=1.0"  # the partition of the `bbc` fixture (conftest.py)


def test_client_statistics_by_hand() -> None:
    values = np.array([0.2, 0.9, 0.5, 0.7, 0.4, 0.6, 0.8, 0.3, 1.0, 0.1, 0.55])
    examples = np.array([1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 4])
    stats = client_statistics(values, examples)
    assert stats["n"] == 11 and stats["mean"] == pytest.approx(values.mean())
    assert stats["weighted_mean"] == pytest.approx((values * examples).sum() / 16)
    # ceil(10% of 11) = 2 clients at each end.
    assert stats["worst10_mean"] == pytest.approx((0.1 + 0.2) / 2)
    assert stats["best10_mean"] == pytest.approx((0.9 + 1.0) / 2)
    assert stats["p50"] == pytest.approx(0.55) and stats["min"] == 0.1 and stats["std"] == pytest.approx(values.std())
    # Lower is better (perplexity): the worst are the highest.
    assert client_statistics(values, examples, greater_is_better=False)["worst10_mean"] == pytest.approx(0.95)


def _train(bbc, out: Path, *flags: str) -> int:
    data, part = bbc
    return main(["train", "--data", str(data), "--partition", str(part), "--method", METHOD, "--model", "tiny-bert",
                 "--rounds", "2", "--clients-per-round", "4", "--local-steps", "2", "--batch-size", "8",
                 "--max-seq-length", "32", "--out", str(out), "--quiet", "true", *flags])


def test_per_client_evaluation_of_a_real_run(bbc, tmp_path: Path) -> None:
    """Every client's test split is scored; their example-weighted mean is the global accuracy (the clients'
    test splits cover the test set), and clients.csv and result.json agree."""
    assert _train(bbc, tmp_path / "run", "--eval-clients", "all", "--eval-clients-every", "1") == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    rows = list(csv.DictReader(open(tmp_path / "run" / "clients.csv")))
    final = [r for r in rows if r["round"] == "2"]
    assert {r["round"] for r in rows} == {"1", "2"} and len(final) == result["clients"]["n"] == 12
    accuracies = np.array([float(r["accuracy"]) for r in final])
    examples = np.array([int(r["examples"]) for r in final])
    assert examples.sum() == 222  # BBC's test split, spread over the 12 clients
    assert result["clients"]["weighted_mean"] == pytest.approx(result["value"])
    assert result["clients"]["std"] == pytest.approx(accuracies.std())
    assert all(float(r["loss"]) > 0 for r in final)
    history = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert [h["round"] for h in history] == [1, 2] and all("clients" in h and "train_loss" in h for h in history)


@pytest.mark.parametrize("flags, message", [
    (("--eval-clients", "ids:99"), "--eval-clients: client 99 does not exist"),
    (("--eval-clients", "most"), "--eval-clients must be all, a number of clients or ids:ID,ID,..."),
    (("--algorithm", "qfedavg", "--q", "-1"), "--q must be 0 or more, got -1.0"),
    (("--algorithm", "qfedavg"), "--algorithm qfedavg needs --q"),
])
def test_bad_fairness_options_are_one_line(bbc, tmp_path: Path, capsys, flags, message) -> None:
    assert _train(bbc, tmp_path / "bad", *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def _updates(deltas: list[torch.Tensor], losses: list[float], sums: torch.Tensor) -> list[ClientUpdate]:
    return [ClientUpdate(k, 0.123, 10, 1, 0.0, 0.0, 0.0, [d.clone()], sums, {"h": 0}, loss_global=loss)
            for k, (d, loss) in enumerate(zip(deltas, losses))]


def _qfedavg_step(q: float, deltas: list[torch.Tensor], losses: list[float], lr: float = 0.1) -> torch.Tensor:
    algorithm = QFedAvg(TrainConfig(data="d", partition="p", method="m", algorithm="qfedavg", lr=lr,
                                    algorithm_args={"q": q}))
    sums, aggregate = torch.zeros(1, dtype=torch.float64), torch.zeros(3)
    for update in _updates(deltas, losses, sums):
        algorithm.process_client_update(update, None)
        aggregate.add_(update.parts[0], alpha=update.weight)
    x = torch.zeros(3)
    algorithm.server_step(x, aggregate, make_context(0, 0, [0, 1, 2], 3, 3).with_sums({"h": float(sums[0])}))
    return x


def test_qfedavg_with_q_zero_is_fedavg_with_uniform_weights_and_follows_the_paper() -> None:
    deltas = [torch.tensor([1.0, 0.0, 2.0]), torch.tensor([-3.0, 1.0, 0.5]), torch.tensor([0.2, 0.2, 0.2])]
    losses = [0.5, 2.0, 1.0]
    torch.testing.assert_close(_qfedavg_step(0.0, deltas, losses), sum(deltas) / 3)
    # q = 2 by the paper's formulas (L = 1/lr = 10, Delta w_k = -L delta_k): w - sum F^q Dw / sum h.
    L, q = 10.0, 2.0
    num = sum(f**q * (-L * d) for f, d in zip(losses, deltas))
    h = sum(q * f ** (q - 1) * float((L * d).norm()) ** 2 + L * f**q for f, d in zip(losses, deltas))
    torch.testing.assert_close(_qfedavg_step(q, deltas, losses), -num / h)


def test_qfedavg_trains_end_to_end(bbc, tmp_path: Path) -> None:
    assert _train(bbc, tmp_path / "q", "--algorithm", "qfedavg", "--q", "1", "--lr", "0.05", "--optimizer", "sgd",
                  "--eval-clients", "3") == 0
    result = json.loads((tmp_path / "q" / "result.json").read_text())
    assert result["algorithm"] == "qfedavg" and result["config"]["q"] == 1.0 and result["clients"]["n"] == 3
    assert np.isfinite(result["history"][-1]["train_loss"])


def test_clients_to_evaluate_by_hand() -> None:
    from fednlp.errors import UserError
    from fednlp.federation.clients import ClientData, clients_to_evaluate

    clients = ClientData(train=[np.arange(3)] * 4, test=[np.array([10, 11]), np.array([], dtype=np.int64),
                                                         np.array([12]), np.array([13, 14])])
    assert sorted(clients_to_evaluate("all", clients, 0)) == [0, 2, 3]  # client 1 has no test data
    assert sorted(clients_to_evaluate("ids:3,0", clients, 0)) == [0, 3]
    two = clients_to_evaluate("2", clients, 7)
    assert len(two) == 2 and two.keys() <= {0, 2, 3} and two == clients_to_evaluate("2", clients, 7)
    with pytest.raises(UserError, match="^--eval-clients: client 1 has no test data in the partition$"):
        clients_to_evaluate("ids:1", clients, 0)
    with pytest.raises(UserError, match="--eval-clients 4 exceeds the 3 clients with test data"):
        clients_to_evaluate("4", clients, 0)
