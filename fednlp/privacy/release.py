"""What a DP run publishes besides its model, and `--dp-release`: a run directory holding only protected outputs.

A DP run's guarantee covers the model (and the noised numbers the mechanism releases: the adaptive clip, the
noised unclipped fraction, epsilon). A simulation's run directory holds more, unprotected: every round's
train_loss (a plain mean of the cohort's losses), per-client metrics and example counts, who trained, and noise
regenerated from the seed in config.yaml (two checkpoints then give back the exact clipped mean). result.json's
dp block lists them (`unprotected_outputs`). With --dp-release the run refuses the options that write per-client
files or checkpoints (fednlp/privacy/options.py), blanks the rest, and seeds its noise from OS entropy, shared by
the ranks and never written.
"""

from __future__ import annotations

import secrets
from typing import Any

# Round-record keys computed from the clients' unnoised values (fednlp/federation/runtime.py's run_round).
UNPROTECTED_ROUND_KEYS = ("train_loss", "clients_skipped_nonfinite")
# result.json keys naming clients or computed from their unnoised values.
UNPROTECTED_RESULT_KEYS = ("clients_trained", "clients")


def unprotected_outputs(config: Any) -> list[str]:
    """What this run directory publishes that the DP guarantee does not cover (result.json["dp"])."""
    if config.dp.release:
        return ["none written: --dp-release (the cohorts and DP-SGD's batches still come from --seed: keep "
                "config.yaml private, or subsampling's amplification does not hold)"]
    out = ["train_loss in metrics.jsonl and result.json's history (the plain mean of the cohort's losses)",
           "clients_trained in result.json (who took part)",
           "noise regenerated from --seed in config.yaml (with two checkpoints: the exact clipped sum)"]
    if config.eval_clients is not None:
        out.append("clients.csv and result.json's clients block (per-client test metrics and example counts)")
    if config.checkpoint_every is not None:
        out.append("checkpoints/ (weights before the noise can be recomputed from the seed)")
    if config.on_nonfinite == "stop":
        out.append("the diverging client's identity (--on-nonfinite stop's error)")
    if config.dp.mechanism == "sample":
        out.append("dp_clients.csv (each client's example count)")
    return out


def noise_secret(comm: Any) -> int:
    """A noise seed from OS entropy, drawn on rank 0 and shared: every rank adds the same noise."""
    return comm.broadcast(secrets.randbits(62) if comm.rank == 0 else None)


def scrub_round(record: dict[str, Any]) -> dict[str, Any]:
    """A round's record under --dp-release: the unprotected keys blanked (null)."""
    return {**record, **{key: None for key in UNPROTECTED_ROUND_KEYS}}


def scrub_result(result: dict[str, Any]) -> None:
    """result.json under --dp-release, in place: the unprotected keys dropped (the rounds' records in its
    history were scrubbed as they were made: ClientDP / SampleDP.round_record)."""
    for key in UNPROTECTED_RESULT_KEYS:
        result.pop(key, None)
