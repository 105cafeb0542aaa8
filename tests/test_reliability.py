"""Reliability: failing ranks end the job, interrupted runs resume to the same result, corrupt
checkpoints are skipped, and 1, 2 or 3 ranks give the same metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mpi_helpers import HERE

FEDNLP = str(Path(sys.executable).with_name("fednlp"))
METHOD = "niid_label_clients=12_alpha=1.0"


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(HERE.parent), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}


def _mpi(ranks: int) -> list[str]:
    if ranks == 1:
        return []
    return ["mpirun", "-n", str(ranks), "--oversubscribe", "--allow-run-as-root", "--bind-to", "none",
            "-x", "PYTHONPATH", "-x", "HF_HUB_OFFLINE", "-x", "OMP_NUM_THREADS", "-x", "FAULT", "-x", "FAULT_RANK"]


def _train_args(bbc, out: Path, **flags) -> list[str]:
    data, part = bbc
    values = {"data": data, "partition": part, "method": METHOD, "model": "tiny-bert", "rounds": 6,
              "clients-per-round": 4, "local-steps": 6, "batch-size": 8, "max-seq-length": 32, "lr": 0.05,
              "optimizer": "sgd", "eval-max-examples": 48, "eval-every": 2, "checkpoint-every": 1, "seed": 5,
              "out": out, "overwrite": "true", **flags}
    return [x for k, v in values.items() for x in (f"--{k}", str(v))]


def _final(out: Path) -> tuple[dict, torch.Tensor]:
    result = json.loads((out / "result.json").read_text())
    last = sorted((out / "checkpoints").glob("round-*.pt"))[-1]
    return result["metrics"], torch.load(last, weights_only=False)["global_weights"]


def _run(args: list[str], ranks: int = 1, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(_mpi(ranks) + [FEDNLP, "train", *args], capture_output=True, text=True, timeout=timeout,
                          env=_env(**env))


def _kill_after_checkpoint(args: list[str], out: Path, ranks: int, round_: int) -> None:
    """Start the run and kill -9 the whole job once the checkpoint of `round_` is complete."""
    proc = subprocess.Popen(_mpi(ranks) + [FEDNLP, "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env(), start_new_session=True)
    marker = out / "checkpoints" / f"round-{round_:06d}.sha256"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run never wrote its checkpoint"
    assert not (out / "result.json").exists(), "the run finished before it could be interrupted"


@pytest.mark.parametrize("algorithm, ranks", [("fedavg", 1), ("fedadam", 1), ("fedavg", 2), ("fedadam", 2)])
def test_killed_and_resumed_run_ends_where_the_uninterrupted_run_ends(bbc, tmp_path, algorithm, ranks) -> None:
    extra = {"algorithm": algorithm, **({"server-lr": "0.01"} if algorithm == "fedadam" else {})}
    straight = tmp_path / "straight"
    assert _run(_train_args(bbc, straight, **extra), ranks).returncode == 0
    interrupted = tmp_path / "interrupted"
    _kill_after_checkpoint(_train_args(bbc, interrupted, **extra), interrupted, ranks, round_=2)
    done = _run(["--resume", str(interrupted)], ranks)
    assert done.returncode == 0, done.stderr[-2000:]
    (m1, w1), (m2, w2) = _final(straight), _final(interrupted)
    torch.testing.assert_close(w2, w1, rtol=0, atol=1e-6)
    assert m2 == pytest.approx(m1, abs=1e-6)
    lines = [json.loads(line) for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert [line["round"] for line in lines] == [1, 2, 3, 4, 5, 6]  # a line per round: its training loss
    assert [line["round"] for line in lines if "accuracy" in line] == [2, 4, 6]  # and the evaluations


def test_corrupt_checkpoint_is_skipped_for_the_previous_one(bbc, tmp_path) -> None:
    out = tmp_path / "run"
    assert _run(_train_args(bbc, out, rounds=3)).returncode == 0
    _, weights = _final(out)
    newest = out / "checkpoints" / "round-000003.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated copy
    done = _run(["--resume", str(out)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "round-000003.pt fails its sha256 check" in done.stderr and "using the previous one" in done.stderr
    torch.testing.assert_close(_final(out)[1], weights, rtol=0, atol=1e-6)


def test_sigint_checkpoints_the_last_round_and_exits_cleanly(bbc, tmp_path) -> None:
    out = tmp_path / "run"
    args = _train_args(bbc, out, **{"checkpoint-every": 100, "eval-every": 1})
    proc = subprocess.Popen([FEDNLP, "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err and "--resume" in err
    checkpoints = sorted((out / "checkpoints").glob("round-*.pt"))
    assert len(checkpoints) == 1 and not (out / "result.json").exists()
    assert _run(["--resume", str(out)]).returncode == 0
    assert json.loads((out / "result.json").read_text())["rounds"] == 6


@pytest.mark.parametrize("fault, expected", [("raise", "injected plugin bug in round 2"), ("kill", "signal 9")])
def test_a_failing_rank_ends_the_whole_job_promptly(bbc, tmp_path, fault, expected) -> None:
    script = HERE / "mpi_scripts" / "faulty_train.py"
    args = _train_args(bbc, tmp_path / "run", algorithm="faulty", **{"checkpoint-every": 100})
    start = time.monotonic()
    done = subprocess.run(_mpi(3) + [sys.executable, str(script), "train", *args], capture_output=True, text=True,
                          timeout=180, env=_env(FAULT=fault, FAULT_RANK="1"))
    assert done.returncode != 0
    assert time.monotonic() - start < 120
    assert expected in done.stderr, done.stderr[-3000:]
    assert "rank 1" in done.stderr
    assert not (tmp_path / "run" / "result.json").exists()


@pytest.fixture(scope="module")
def conll(tmp_path_factory, shared_data: Path) -> tuple[Path, Path]:
    """300 train and 100 test sentences of CoNLL-2003, partitioned by entity type over 6 clients."""
    from fednlp.cli import main
    from fednlp.data.datafile import DataFile, read_data_file, write_data_file

    root = tmp_path_factory.mktemp("conll")
    assert main(["data", "prepare", "--dataset", "conll2003", "--source", str(shared_data / "conll2003"),
                 "--out", str(root / "full.h5")]) == 0
    full = read_data_file(root / "full.h5")
    keep = full.train_index_list[:300] + full.test_index_list[:100]
    small = DataFile("sequence_tagging", {k: [full.fields[k][i] for i in keep] for k in ("X", "Y")},
                     list(range(300)), list(range(300, 400)), dict(full.label_vocab), {"dataset": "conll2003"})
    write_data_file(small, root / "conll.h5")
    assert main(["partition", "--data", str(root / "conll.h5"), "--out", str(root / "p.h5"), "--method",
                 "niid_label", "--clients", "6", "--alpha", "1.0"]) == 0
    return root / "conll.h5", root / "p.h5"


@pytest.mark.parametrize("task, algorithm", [("classification", "fedyogi"), ("tagging", "fedavg")])
def test_one_two_and_three_ranks_and_a_rerun_give_the_same_metrics(bbc, conll, tmp_path, task, algorithm) -> None:
    pair, method = (bbc, METHOD) if task == "classification" else (conll, "niid_label_clients=6_alpha=1.0")
    flags = {"rounds": 2, "algorithm": algorithm, "method": method, "task": task, "clients-per-round": 3,
             "local-steps": 3, **({"server-lr": "0.01"} if algorithm == "fedyogi" else {})}
    metrics = {}
    for name, ranks in (("r1", 1), ("rerun", 1), ("r2", 2), ("r3", 3)):
        out = tmp_path / name
        done = _run(_train_args(pair, out, **flags), ranks)
        assert done.returncode == 0, done.stderr[-2000:]
        metrics[name] = _final(out)
    assert metrics["rerun"][0] == metrics["r1"][0]
    torch.testing.assert_close(metrics["rerun"][1], metrics["r1"][1], rtol=0, atol=0)
    for name in ("r2", "r3"):
        assert metrics[name][0] == pytest.approx(metrics["r1"][0], abs=1e-5)
        torch.testing.assert_close(metrics[name][1], metrics["r1"][1], rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ exclusive outputs (fednlp/locks.py)

HOLD_LOCK = """
import sys, time
from pathlib import Path
from fednlp.locks import acquire
acquire(Path(sys.argv[1]), "test")
print("locked", flush=True)
time.sleep(600)
"""


def _hold_lock(lock_path: Path) -> subprocess.Popen:
    """Another process holding `lock_path` (as a concurrent fednlp command would) until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock_path)], stdout=subprocess.PIPE, text=True,
                            env=_env())
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _one_error_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("fednlp: error: ") and "Traceback" not in err, err
    return err


def test_a_second_run_on_a_running_runs_directory_is_refused_and_a_killed_one_resumes(bbc, tmp_path) -> None:
    import socket

    out = tmp_path / "run"
    args = _train_args(bbc, out, rounds=40, **{"eval-every": 40})
    proc = subprocess.Popen([FEDNLP, "train", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env())
    marker = out / "checkpoints" / "round-000001.sha256"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.exists(), "the first run never wrote its first checkpoint"
    config_before = (out / "config.yaml").read_text()
    second = _run(_train_args(bbc, out, lr=0.01))
    assert second.returncode == 2
    err = _one_error_line(second.stderr)
    assert f"--out {out} is in use by another fednlp command (pid {proc.pid} on host {socket.gethostname()})" in err
    assert (out / "config.yaml").read_text() == config_before  # the second run wrote nothing there
    proc.kill()  # kill -9: the lock file stays, naming a dead pid, but the kernel has dropped the lock
    proc.wait()
    assert (out / ".fednlp.lock").read_text().startswith(f"pid {proc.pid} ")
    newest = int(sorted((out / "checkpoints").glob("round-*.sha256"))[-1].stem.split("-")[1])
    done = _run(["--resume", str(out), "--rounds", str(newest + 1)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "result.json").read_text())["rounds"] == newest + 1
    assert not (out / ".fednlp.lock").exists()  # a finished run releases its directory


@pytest.mark.parametrize("command", ["partition", "prepare"])
def test_a_locked_output_file_is_refused_and_freed_when_its_holder_dies(bbc, tmp_path, command, capsys) -> None:
    from fednlp.cli import main

    out = tmp_path / "out.h5"
    argv = (["partition", "--data", str(bbc[0]), "--out", str(out), "--method", "uniform", "--clients", "3"]
            if command == "partition" else
            ["data", "prepare", "--dataset", "csv", "--text-column", "text", "--label-column", "label", "--source",
             str(_small_csv(tmp_path.parent / f"{tmp_path.name}.csv")), "--test-fraction", "0.5", "--out", str(out)])
    holder = _hold_lock(tmp_path / ".out.h5.lock")
    try:
        assert main(argv) == 2
        err = _one_error_line(capsys.readouterr().err)
        assert f"--out {out} is in use by another fednlp command (pid {holder.pid} on host" in err
        assert sorted(p.name for p in tmp_path.iterdir()) == [".out.h5.lock"]  # the holder's file only
    finally:
        holder.kill()
        holder.wait()
    assert main(argv) == 0  # the dead holder's lock file does not block
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]


def _small_csv(path: Path) -> Path:
    path.write_text("text,label\n" + "".join(f"text {i},{i % 2}\n" for i in range(20)))
    return path


def test_concurrent_partition_commands_never_lose_a_group(bbc, tmp_path) -> None:
    """Both start at once; each either adds its group or is refused with exit 2: never a lost group."""
    from fednlp.data_partition.partition_file import group_names

    out = tmp_path / "p.h5"
    methods = {"uniform": [], "niid_label": ["--alpha", "0.5"], "niid_quantity": ["--beta", "5"]}
    procs = {method: subprocess.Popen([FEDNLP, "partition", "--data", str(bbc[0]), "--out", str(out), "--method",
                                       method, "--clients", "4", *extra], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=_env())
             for method, extra in methods.items()}
    finished = {method: (proc.wait(timeout=120), proc.stderr.read()) for method, proc in procs.items()}
    groups = group_names(out)
    for method, (code, err) in finished.items():
        if code == 0:
            assert any(g.startswith(f"{method}_clients=4") for g in groups), (method, groups)
        else:
            assert code == 2 and "is in use by another fednlp command (pid" in _one_error_line(err)
    assert any(code == 0 for code, _ in finished.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.h5"]


# ------------------------------------------------------------------------------ fednlp supervise --max-restarts


def _rank_pid(out: Path, rank: int) -> int | None:
    """The pid of rank `rank` of the job training into `out` (read from /proc: its MPI rank variable)."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if str(out).encode() in cmdline and b"train" in cmdline and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_supervise_restarts_a_job_whose_rank_was_killed_and_ends_with_the_uninterrupted_weights(bbc, tmp_path) -> None:
    straight = tmp_path / "straight"
    assert _run(_train_args(bbc, straight), 2).returncode == 0
    out = tmp_path / "supervised"
    proc = subprocess.Popen([FEDNLP, "supervise", "--max-restarts", "2", "--restart-delay", "0", "--",
                             *_mpi(2), FEDNLP, "train", *_train_args(bbc, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    marker = out / "checkpoints" / "round-000002.sha256"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    victim = _rank_pid(out, 1)
    assert marker.exists() and victim is not None and not (out / "result.json").exists()
    os.kill(victim, signal.SIGKILL)  # a rank lost mid-run, as a node failure or the OOM killer would
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    restarts = [json.loads(line) for line in (out / "restarts.jsonl").read_text().splitlines()]
    assert len(restarts) == 1 and restarts[0]["restart"] == 1 and restarts[0]["resumed_round"] >= 2
    assert f"restart 1 of 2 from the checkpoint of round {restarts[0]['resumed_round']}" in err
    (m1, w1), (m2, w2) = _final(straight), _final(out)
    torch.testing.assert_close(w2, w1, rtol=0, atol=1e-6)
    assert m2 == pytest.approx(m1, abs=1e-6)


@pytest.mark.parametrize("flags, code, why", [({"lr": "nan"}, 2, "bad input"),
                                              ({"lr": "1e30"}, 3, "non-finite loss or update")])
def test_supervise_does_not_restart_a_run_that_failed_for_its_own_reason(bbc, tmp_path, flags, code, why) -> None:
    out = tmp_path / "run"
    done = subprocess.run([FEDNLP, "supervise", "--max-restarts", "3", "--restart-delay", "0", "--", FEDNLP, "train",
                           *_train_args(bbc, out, rounds=2, **flags)], capture_output=True, text=True, timeout=300,
                          env=_env())
    assert done.returncode == code, done.stderr[-3000:]
    assert f"the job ended with exit code {code} ({why}): the run's own fault, not restarted" in done.stderr
    assert "restart 1" not in done.stderr and not (out / "restarts.jsonl").exists()


def test_resume_with_fewer_rounds_than_done_is_one_line(bbc, tmp_path) -> None:
    out = tmp_path / "run"
    assert _run(_train_args(bbc, out, rounds=2)).returncode == 0
    done = _run(["--resume", str(out), "--rounds", "1"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"fednlp: error: --rounds 1: the run in {out} has already completed 2 rounds; give --rounds 2 or more to "
        "continue it"]
    again = _run(["--resume", str(out), "--rounds", "2"])  # nothing left to train: the recorded result again
    assert again.returncode == 0, again.stderr[-2000:]
