"""Cohort-parallel clients against the sequential round loop and the centralized floor, side by side.

    .venv/bin/python -m benchmarks.parallel_clients                                # WU-A and WU-B, N = 10, 3 repeats
    .venv/bin/python -m benchmarks.parallel_clients --units WU-B --parallel 10 50 --repeats 3
    .venv/bin/python -m benchmarks.parallel_clients --units WU-B --rounds 2 --repeats 1   # a quick check
    .venv/bin/python -m benchmarks.parallel_clients --units WU-B --parallel 25 --ranks 1 2   # and under mpirun -n 2

For each unit (benchmarks/run.py's UNITS) and each repeat, in one process each: `fednlp train` one client after
another, `fednlp train --parallel-clients N` for each N, and `fednlp centralized` with the same number of
steps (the floor, benchmarks/run.py: one process, 2 threads). With `--ranks 1 2` each federated variant also runs
under `mpirun -n 2` (one thread per rank, as benchmarks/run.py runs ranks; N is then the clients at once on each
rank) against the same floor. Prints, per variant, the median over the repeats of the round loop
(evaluation excluded), R = round loop / floor, and the peak resident memory; checks that the grouped run did
group (result.json's "parallel_clients" block) and appends one JSON line per variant to benchmarks/results.jsonl
(not for a quick check with --rounds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from benchmarks.run import (RESULTS, UNITS, WORK, loop_without_evaluation, machine, prepare, run_federated, run_floor,
                            selected_units)


def measure(unit, sizes: list[int], repeats: int, extra: tuple[str, ...], ranks: list[int]) -> list[dict]:
    data, part = prepare(unit)
    variants = [(r, n) for r in ranks for n in (1, *sizes)]
    loops: dict[int, list[float]] = {n: [] for n in variants}
    peaks: dict[int, list[float]] = {n: [] for n in variants}
    cuda_peaks: dict[int, list[float]] = {n: [] for n in variants}
    floors: list[float] = []
    records: dict[int, dict] = {}
    for _ in range(repeats):
        steps = None
        for variant in variants:
            n = variant[1]
            result = run_federated(unit, data, part, variant[0], (*extra, "--parallel-clients", str(n)))
            record = result.get("parallel_clients", {"used": 1, "fallback": None})
            if n > 1 and record["used"] != n:
                raise SystemExit(f"{unit.name}: --parallel-clients {n} fell back: {record['fallback']}")
            records[variant] = record
            loops[variant].append(loop_without_evaluation(result, "round_loop_s"))
            peaks[variant].append(max(result["peak_rss_mb_per_rank"]))
            cuda_peaks[variant].append(max(result.get("peak_cuda_mb_per_rank") or [0.0]))  # 0 off the GPU
            steps = result["local_steps_total"]
        floor = run_floor(unit, data, steps, extra)
        floors.append(loop_without_evaluation(floor, "train_loop_s"))
    floor_s = statistics.median(floors)
    rows = []
    for variant in variants:
        loop = statistics.median(loops[variant])
        rows.append({
            "unit": unit.name, "ranks": variant[0], "parallel_clients": variant[1], "repeats": repeats,
            "round_loop_s": round(loop, 3), "floor_s": round(floor_s, 3), "R": round(loop / floor_s, 3),
            "round_loop_runs_s": [round(x, 3) for x in loops[variant]],
            "floor_runs_s": [round(x, 3) for x in floors], "peak_rss_mb": round(max(peaks[variant]), 1),
            "peak_cuda_mb": round(max(cuda_peaks[variant]), 1) or None,
            "record": records[variant], "options": list(extra),
            "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        })
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| unit | ranks | clients at once (per rank) | round loop s (median) | floor s (median) | R | "
             "peak MB per rank |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['unit']} | {r['ranks']} | {r['parallel_clients']} | {r['round_loop_s']:.2f} | "
                     f"{r['floor_s']:.2f} | {r['R']:.3f} | {r['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", nargs="+", default=["WU-A", "WU-B"], choices=sorted(UNITS))
    parser.add_argument("--parallel", nargs="+", type=int, default=[10], help="the N of --parallel-clients to run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ranks", nargs="+", type=int, default=[1], help="run each variant with these rank counts")
    parser.add_argument("--rounds", type=int, help="override every unit's rounds (a quick check: not recorded)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="every variant's and the floor's --precision (bf16: autocast)")
    args = parser.parse_args(argv)
    extra = ("--device", args.device, "--precision", args.precision)
    WORK.mkdir(parents=True, exist_ok=True)
    rows = []
    for unit in selected_units(args.units, args.rounds):
        for row in measure(unit, args.parallel, args.repeats, extra, args.ranks):
            rows.append(row)
            if not args.rounds:
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(row, sort_keys=True) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
