"""WU-M: a million clients. A generated data file of short texts whose `user` field gives 1,000,000 users
with heavy-tailed sizes, partitioned by user (`fednlp partition --method natural --field user`), then
10 rounds of 100 clients with tiny-bert against the centralized floor of the same steps.

    .venv/bin/python -m benchmarks.wu_m                                  # the unit: 1M clients, 2M rows
    .venv/bin/python -m benchmarks.wu_m --clients 100000 --rows 200000   # scaled down (a loaded machine)

It reports: the partition command's wall time (end to end, a fresh process) and the partition file's size
in both layouts (compact default and --layout fednlp, the latter only up to --fednlp-max-clients), the time
to open the file and read one client's indices (median over 200 random clients, each a fresh open), the
round loop's R against the centralized floor (benchmarks/run.py's definition: round loop without
evaluation / floor's training loop without evaluation) and peak memory per rank. One JSON line per run is
appended to benchmarks/results.jsonl.

Sizes: user u's training-set size is 1 + a Pareto(shape 1.2) share of the remaining rows (every user holds
at least one example; the largest hold thousands), drawn with numpy's Generator from --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.run import RESULTS, WORK, fednlp, flags, loop_without_evaluation, machine

WORDS = np.array("the a of to and in is was for on that with as by at from it his an were are which this be or "
                 "has had one their not but new first two after who all also they been its more when there over "
                 "time she into only year other can would some film city most than may".split())
TRAIN = dict(model="tiny-bert", max_seq_length=32, rounds=10, clients_per_round=100, local_steps=1, batch_size=8,
             lr=0.1, optimizer="sgd", eval_max_examples=1000)
SHARED_FLAGS = ("model", "max_seq_length", "batch_size", "lr", "optimizer", "eval_max_examples")


def user_of_rows(n_users: int, n_rows: int, rng: np.random.Generator, shape: float = 1.2) -> np.ndarray:
    """A user id per row: each user once, the other rows spread in proportion to Pareto(shape) weights."""
    if n_rows < n_users:
        raise SystemExit(f"--rows {n_rows} must be at least --clients {n_users}")
    weights = rng.pareto(shape, n_users) + 1e-3
    extra = rng.choice(n_users, size=n_rows - n_users, p=weights / weights.sum())
    users = np.concatenate([np.arange(n_users), extra])
    return users[rng.permutation(n_rows)]


def write_data(path: Path, n_users: int, n_rows: int, seed: int) -> None:
    """n_rows short texts (3 to 8 common words), two labels, a user each; 5% more rows as the test split
    (users drawn with the same weights)."""
    from fednlp.data.datafile import DataFile, write_data_file

    rng = np.random.default_rng(seed)
    n_test = n_rows // 20
    users = np.concatenate([user_of_rows(n_users, n_rows, rng), rng.integers(0, n_users, n_test)])
    total = n_rows + n_test
    lengths = rng.integers(3, 9, total)
    words = WORDS[rng.integers(0, len(WORDS), int(lengths.sum()))]
    cuts = np.cumsum(lengths)[:-1]
    texts = [" ".join(w) for w in np.split(words, cuts)]
    labels = np.where(rng.random(total) < 0.5, "neg", "pos").tolist()
    data = DataFile("text_classification", {"X": texts, "Y": labels, "user": [f"u{u}" for u in users.tolist()]},
                    list(range(n_rows)), list(range(n_rows, total)), {"neg": 0, "pos": 1},
                    {"dataset": f"wu_m_{n_users}"})
    write_data_file(data, path)


def timed_partition(data: Path, out: Path, n_users: int, layout: str) -> float:
    out.unlink(missing_ok=True)
    start = time.perf_counter()
    fednlp("partition", "--data", str(data), "--out", str(out), "--method", "natural", "--field", "user",
           "--clients", str(n_users), "--layout", layout)
    return time.perf_counter() - start


def one_client_read_ms(part: Path, group: str, n_users: int, seed: int, tries: int = 200) -> float:
    """Median of: open the file, read one random client's train indices, close (h5py, this process)."""
    from fednlp.data_partition.partition_file import read_client

    rng = np.random.default_rng(seed)
    times = []
    for client in rng.integers(0, n_users, tries).tolist():
        start = time.perf_counter()
        read_client(part, group, client)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def round_loop(data: Path, part: Path, group: str, ranks: int) -> dict:
    out = WORK / "runs" / f"WU-M-{group}-r{ranks}"
    start = time.perf_counter()
    fednlp("train", "--data", str(data), "--partition", str(part), "--method", group,
           *flags({**TRAIN, "eval_every": TRAIN["rounds"]}), "--out", str(out), "--overwrite", "true", "--quiet",
           "true", "--save-model", "false", ranks=ranks, threads=max(1, (os.cpu_count() or 1) // ranks))
    result = json.loads((out / "result.json").read_text())
    result["process_wall_s"] = time.perf_counter() - start
    return result


def floor(data: Path, steps: int) -> dict:
    out = WORK / "runs" / "WU-M-floor"
    shared = {k: v for k, v in TRAIN.items() if k in SHARED_FLAGS}
    fednlp("centralized", "--data", str(data), *flags(shared), "--steps", str(steps), "--out", str(out),
           "--overwrite", "true", "--quiet", "true", "--save-model", "false", threads=os.cpu_count())
    return json.loads((out / "result.json").read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=2_000_000, help="training rows (5%% more are the test split)")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fednlp-max-clients", type=int, default=100_000,
                        help="also time --layout fednlp up to this many clients (it writes two datasets per client)")
    parser.add_argument("--skip-training", action="store_true", help="partition and read times only")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    data = WORK / f"wu_m_{args.clients}_{args.rows}_s{args.seed}.h5"
    if not data.exists():
        start = time.perf_counter()
        write_data(data, args.clients, args.rows, args.seed)
        print(f"generated {data} in {time.perf_counter() - start:.1f}s", flush=True)
    group = f"natural_clients={args.clients}_field=user"
    row: dict = {"unit": "WU-M", "clients": args.clients, "rows": args.rows, "seed": args.seed,
                 "data_mb": round(data.stat().st_size / 2**20, 1), "load_avg_1m": os.getloadavg()[0]}
    layouts = ["csr"] + (["fednlp"] if args.clients <= args.fednlp_max_clients else [])
    for layout in layouts:
        part = WORK / f"wu_m_{args.clients}_{layout}.h5"
        row[f"partition_s_{layout}"] = round(timed_partition(data, part, args.clients, layout), 2)
        row[f"partition_mb_{layout}"] = round(part.stat().st_size / 2**20, 2)
        row[f"read_one_client_ms_{layout}"] = round(one_client_read_ms(part, group, args.clients, args.seed), 3)
        print(json.dumps({k: v for k, v in row.items() if k.endswith(layout)}), flush=True)
    if not args.skip_training:
        part = WORK / f"wu_m_{args.clients}_csr.h5"
        base = None
        for ranks in args.ranks:
            fed = round_loop(data, part, group, ranks)
            base = base or floor(data, fed["local_steps_total"])
            fed_loop, floor_loop = loop_without_evaluation(fed, "round_loop_s"), loop_without_evaluation(base, "train_loop_s")
            row[f"r{ranks}"] = {"steps": fed["local_steps_total"], "wall_s": round(fed["process_wall_s"], 1),
                                "round_loop_s": round(fed_loop, 2), "floor_s": round(floor_loop, 2),
                                "R": round(fed_loop / floor_loop, 3), "peak_rss_mb_per_rank": fed["peak_rss_mb_per_rank"],
                                "floor_peak_rss_mb": base["peak_rss_mb_per_rank"][0]}
            print(json.dumps(row[f"r{ranks}"]), flush=True)
    row.update(machine=machine(), when=time.strftime("%Y-%m-%d %H:%M:%S"), load_avg_1m_end=os.getloadavg()[0])
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    sys.exit(main())
