"""Evaluate the initial model of a config (RunConfig fields as JSON in argv[1]) on its test set, sharded
over however many ranks run this; rank 0 writes the metrics to argv[2] (JSON)."""

import json
import sys

import torch

from fednlp.config import RunConfig
from fednlp.federation.communicator import make_communicator
from fednlp.run.session import open_session

config = RunConfig(**json.loads(sys.argv[1]))
comm = make_communicator()
session = open_session(config, comm, "evaluate")
torch.manual_seed(0)
metrics = session.evaluate()
if comm.rank == 0:
    with open(sys.argv[2], "w") as f:
        json.dump(metrics, f)
