"""Sharded evaluation: time of one evaluation of the test set on R ranks, one thread per rank.

    .venv/bin/python -m benchmarks.eval_scaling [--ranks 1 2] [--examples 2000]

Runs under mpirun (R > 1) with OMP_NUM_THREADS=1 so that R ranks have R times the compute of one,
and times `Session.evaluate()` (predict the rank's shard, gather predictions, compute the metric) on
20 Newsgroups test documents with tiny-bert at max length 128. Appends to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.run import RESULTS, UNITS, WORK, machine, prepare


def child(data: str, examples: int) -> None:
    """One rank: evaluate three times, report the best on rank 0."""
    from fednlp.config import RunConfig
    from fednlp.federation.communicator import make_communicator
    from fednlp.run.session import open_session

    comm = make_communicator()
    config = RunConfig(data=data, model="tiny-bert", max_seq_length=128, eval_batch_size=64,
                       eval_max_examples=examples, out=str(WORK / "runs" / "eval-scaling"), overwrite=True)
    session = open_session(config, comm, "eval-scaling")
    session.evaluate()  # warm-up
    times = []
    for _ in range(3):
        comm.barrier()
        start = time.perf_counter()
        session.evaluate()
        times.append(time.perf_counter() - start)
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.world_size, "evaluate_s": min(times)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.examples)
    data, _ = prepare(UNITS["WU-A"])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    base = None
    for ranks in args.ranks:
        cmd = [sys.executable, "-m", "benchmarks.eval_scaling", "--child", str(data), "--examples", str(args.examples)]
        if ranks > 1:
            cmd = ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
                   "-x", "OMP_NUM_THREADS", "-x", "HF_HUB_OFFLINE", *cmd]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        row = json.loads(out.strip().splitlines()[-1])
        base = base or row["evaluate_s"]
        row.update(kind="eval_scaling", examples=args.examples, speedup=round(base / row["evaluate_s"], 2),
                   machine=machine(), when=time.strftime("%Y-%m-%d %H:%M:%S"))
        with open(RESULTS, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        print(json.dumps(row))


if __name__ == "__main__":
    sys.exit(main())
