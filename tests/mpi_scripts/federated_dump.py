"""Run a federated config (JSON in argv[1]) and dump what the tests compare across world sizes.

Writes argv[2] (rank 0): final global weights (.npy) and argv[2].json: metrics and every rank's cohorts.
"""

import json
import sys

import numpy as np

from fednlp.config import TrainConfig, build_config
from fednlp.algorithms.samplers import get_sampler
from fednlp.federation.cohort import assign_to_ranks
from fednlp.federation.communicator import make_communicator
from fednlp.federation.runtime import Federation, train_federated

config = build_config(TrainConfig, json.loads(sys.argv[1]))  # flat values, as result.json records them
comm = make_communicator()
captured = {}
original_run = Federation.run


def run_and_capture(self, *args):
    history = original_run(self, *args)
    captured["weights"] = self.global_flat.cpu().numpy().copy()
    captured["sizes"] = self.client_sizes
    return history


Federation.run = run_and_capture
result = train_federated(config, comm)
# What each rank computed, on its own, for every round: the cohort and its spread over the ranks.
plans = []
sampler = get_sampler(config.sampler)()
for r in range(config.rounds):
    cohort = sampler.sample(config.seed, r, captured["sizes"], config.clients_per_round)
    plans.append({"cohort": cohort.tolist(), "assignment": assign_to_ranks(cohort, captured["sizes"], comm.world_size)})
every_rank = comm.allgather(plans)
if comm.rank == 0:
    np.save(sys.argv[2], captured["weights"])
    with open(sys.argv[2] + ".json", "w") as f:
        json.dump({"metrics": result["metrics"], "plans": every_rank}, f)
