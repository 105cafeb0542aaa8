"""Evaluate the initial model of a config (RunConfig fields as JSON in argv[1]) on its test set, sharded
over however many ranks run this; rank 0 writes the metrics to argv[2] (JSON)."""

import json
import sys

import torch

from fednlp.config import RunConfig
from fednlp.federation.communicator import make_communicator
from fednlp.options import sections
from fednlp.run.session import open_session

values = json.loads(sys.argv[1])  # dataclasses.asdict of a RunConfig: its sections (e.g. augment) as dicts
for name, section_cls in sections(RunConfig).items():
    if isinstance(values.get(name), dict):
        values[name] = section_cls(**values[name])
config = RunConfig(**values)
comm = make_communicator()
session = open_session(config, comm, "evaluate")
torch.manual_seed(0)
metrics = session.evaluate()
if comm.rank == 0:
    with open(sys.argv[2], "w") as f:
        json.dump(metrics, f)
