"""Membership inference on a run's model, at the level of examples and of users (clients).

Example level: members are training examples the model saw (federated: those in some local batch of a client
in some round's cohort, recomputed by fednlp/audit/members.py; every training example of a centralized run),
non-members an equal-sized seeded sample of test examples.
Two attacks score each example:
- loss: minus the model's loss (Yeom et al. 2018, "Privacy Risk in Machine Learning");
- calibrated: minus (the model's loss - a reference model's loss), the difficulty calibration of Watson et al.
  2022 ("On the Importance of Difficulty Calibration in Membership Inference Attacks"), with the run's
  initial model or a model trained without the members as the reference.
User level, the federated question (was this client's data in training?): a client's score is minus the
mean calibrated loss of its training examples; members are the clients that trained, non-members the
clients the run held out of every cohort (`fednlp train --holdout-clients F`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from fednlp.audit.metrics import attack_metrics, roc_points
from fednlp.errors import UserError
from fednlp.run.random_streams import AuditStream, run_rng



@dataclass(frozen=True)
class ExampleSets:
    members: np.ndarray  # data-file indices, sorted
    non_members: np.ndarray
    member_pool: int  # how many member candidates there were before sampling
    non_member_pool: int


def example_sets(member_pool: np.ndarray, non_member_pool: np.ndarray, seed: int,
                 max_examples: int | None = None) -> ExampleSets:
    """Equal-sized seeded samples of members and non-members (the smaller pool's size, at most max_examples)."""
    member_pool = np.unique(np.asarray(member_pool, dtype=np.int64))
    non_member_pool = np.unique(np.asarray(non_member_pool, dtype=np.int64))
    n = min(len(member_pool), len(non_member_pool))
    if max_examples is not None:
        n = min(n, max_examples)
    rng = run_rng(seed, AuditStream.MEMBER_SAMPLE)
    members = np.sort(rng.choice(member_pool, size=n, replace=False))
    non_members = np.sort(rng.choice(non_member_pool, size=n, replace=False))
    return ExampleSets(members, non_members, len(member_pool), len(non_member_pool))


def example_level(target: dict[int, float], reference: dict[int, float], sets: ExampleSets) -> dict[str, Any]:
    """Both attacks' metrics and ROC points from per-example losses (data-file index -> loss)."""
    examples = np.concatenate([sets.members, sets.non_members])
    is_member = np.concatenate([np.ones(len(sets.members), bool), np.zeros(len(sets.non_members), bool)])
    loss = np.array([target[int(e)] for e in examples])
    calibrated = loss - np.array([reference[int(e)] for e in examples])
    known = np.isfinite(loss) & np.isfinite(calibrated)  # an example with no model input has no loss
    return _attacks({"loss": -loss[known], "calibrated": -calibrated[known]}, is_member[known],
                    member_pool=sets.member_pool, non_member_pool=sets.non_member_pool)


def user_level(target: dict[int, float], reference: dict[int, float], client_examples: dict[int, np.ndarray],
               member_clients: np.ndarray, non_member_clients: np.ndarray) -> dict[str, Any]:
    """Both attacks at the client level: a client's score is minus the mean (calibrated) loss of its examples."""
    clients = [int(c) for c in np.concatenate([member_clients, non_member_clients])]
    is_member = np.array([c in set(int(m) for m in member_clients) for c in clients])
    losses = {c: np.array([target[int(e)] for e in client_examples[c]]) for c in clients}
    calibrated = {c: losses[c] - np.array([reference[int(e)] for e in client_examples[c]]) for c in clients}
    mean_loss = np.array([np.nanmean(losses[c]) if np.isfinite(losses[c]).any() else np.nan for c in clients])
    mean_calibrated = np.array([np.nanmean(calibrated[c]) if np.isfinite(calibrated[c]).any() else np.nan
                                for c in clients])
    known = np.isfinite(mean_loss) & np.isfinite(mean_calibrated)  # a client with no scored example
    return _attacks({"loss": -mean_loss[known], "calibrated": -mean_calibrated[known]}, is_member[known],
                    examples_per_client=float(np.mean([len(client_examples[c]) for c in clients])))


def _attacks(scores: dict[str, np.ndarray], is_member: np.ndarray, **extra: Any) -> dict[str, Any]:
    if is_member.all() or not is_member.any():
        raise UserError(f"membership inference needs scored members and non-members; got {int(is_member.sum())} "
                        f"members and {int((~is_member).sum())} non-members")
    out: dict[str, Any] = {"attacks": {name: attack_metrics(s, is_member) for name, s in scores.items()}, **extra}
    out["roc"] = {name: roc_points(s, is_member) for name, s in scores.items()}
    return out


def client_example_sample(client_examples: list[np.ndarray], clients: np.ndarray, seed: int,
                          per_client: int | None) -> dict[int, np.ndarray]:
    """Each client's training examples, or a seeded sample of at most `per_client` of them."""
    rng = run_rng(seed, AuditStream.CLIENT_SAMPLE)
    out = {}
    for c in sorted(int(c) for c in clients):
        examples = np.asarray(client_examples[c], dtype=np.int64)
        if per_client is not None and len(examples) > per_client:
            examples = np.sort(rng.choice(examples, size=per_client, replace=False))
        out[c] = examples
    return out
