"""`fednlp train` with a deliberately broken plugin algorithm, to test that failures end the whole job.

FAULT=raise: rank FAULT_RANK raises in the server step of round 2 (a bug in a plugin).
FAULT=kill:  rank FAULT_RANK kills itself with SIGKILL during local training of round 1.
"""

import os
import signal
import sys

from fednlp.algorithms.fedavg import FedAvg
from fednlp.algorithms.registry import register_algorithm
from fednlp.cli import main

RANK = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
FAULTY_RANK = int(os.environ["FAULT_RANK"])


@register_algorithm("faulty")
class Faulty(FedAvg):
    steps = 0

    def adjust_gradients(self, params, global_params):
        Faulty.steps += 1
        if os.environ["FAULT"] == "kill" and RANK == FAULTY_RANK and Faulty.steps == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    def server_step(self, global_flat, mean_update, ctx):
        if os.environ["FAULT"] == "raise" and RANK == FAULTY_RANK and ctx.round_idx == 1:
            raise RuntimeError("injected plugin bug in round 2")
        super().server_step(global_flat, mean_update, ctx)


sys.exit(main(sys.argv[1:]))
