"""What is measured after a round, out of the round loop: the global test metrics (every --eval-every rounds
and after the last), each selected client's metrics (--eval-clients), and under --continual the round's
period and, after a period's last round, the metrics on the next period's test examples (future_*).

Each adds its numbers to the round's record (its metrics.jsonl line). Evaluation never changes the model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fednlp.config import TrainConfig
from fednlp.fairness.client_stats import client_statistics
from fednlp.federation.continual import ContinualSchedule
from fednlp.run.session import Session


class ClientEvaluation:
    """--eval-clients: each selected client's metric on its own test data, after the last round and every
    --eval-clients-every rounds that are evaluation rounds: statistics in the round's record, every client's
    line in clients.csv (rank 0)."""

    def __init__(self, session: Session, client_tests: dict[int, np.ndarray]):
        self.session, self.client_tests = session, client_tests
        self.config: TrainConfig = session.config  # type: ignore[assignment]

    def due(self, done: int) -> bool:
        every = self.config.eval_clients_every
        return bool(self.client_tests) and (done == self.config.rounds or bool(every and done % every == 0))

    def __call__(self, done: int) -> dict[str, float]:
        session = self.session
        primary = session.task.primary_metric
        per_client = session.evaluate_clients(self.client_tests)
        if session.writer is not None:
            session.writer.append_clients(done, per_client, primary)
        values = np.array([m[primary] for m in per_client.values()])
        examples = np.array([m["examples"] for m in per_client.values()])
        return client_statistics(values, examples, session.task.greater_is_better)


class FutureEvaluation:
    """--continual: the period (1-based) in every round's record; after a period's last round, the metrics on
    the next period's test examples (what the model meets next) as future_*, and the round is an evaluation
    round."""

    def __init__(self, session: Session, schedule: ContinualSchedule):
        self.session, self.schedule = session, schedule

    def __call__(self, done: int, record: dict[str, Any]) -> bool:
        """Adds to `record`; returns whether round `done` ends a period."""
        period = self.schedule.period_of_round(done - 1)
        record["period"] = period + 1
        if done % self.schedule.rounds_per_period != 0:
            return False
        future = self.schedule.future_test(self.session.test_examples, period)
        if len(future):
            record.update({f"future_{k}": v for k, v in self.session.evaluate(future).items()})
        return True


class RoundEvaluations:
    """The evaluations due after a round, in their order in the record: the period and future metrics, the
    test metrics with what produced them, the clients' statistics."""

    def __init__(self, session: Session, clients: ClientEvaluation, future: FutureEvaluation | None):
        self.session, self.clients, self.future = session, clients, future
        self.config: TrainConfig = session.config  # type: ignore[assignment]

    @classmethod
    def of(cls, session: Session, client_tests: dict[int, np.ndarray],
           schedule: ContinualSchedule | None) -> "RoundEvaluations":
        """A run's evaluations: `client_tests` from --eval-clients, `schedule` under --continual (else None)."""
        return cls(session, ClientEvaluation(session, client_tests),
                   FutureEvaluation(session, schedule) if schedule is not None else None)

    def __call__(self, done: int, record: dict[str, Any]) -> bool:
        """Adds the numbers of round `done` to `record`; returns whether it was an evaluation round."""
        session = self.session
        final = done == self.config.rounds
        evaluated = done % self.config.eval_every == 0 or final
        if self.future is not None and self.future(done, record):
            evaluated = True
        if evaluated:
            record.update(session.evaluate(final=final), **session.eval_setting(final))
            if self.clients.due(done):
                record["clients"] = self.clients(done)
        return evaluated
