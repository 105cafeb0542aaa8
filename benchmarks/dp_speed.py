"""What differential privacy costs in time (benchmarks, not tests).

    .venv/bin/python -m benchmarks.dp_speed client --units WU-A WU-B     # client-level DP vs FedAvg
    .venv/bin/python -m benchmarks.dp_speed sample --models tiny-bert minilm [--device cuda]
    .venv/bin/python -m benchmarks.dp_speed sample --models minilm --freeze-layers 5 --cache-frozen

client: each work unit of benchmarks/run.py trained twice in fresh processes, FedAvg and client-level DP
(--dp client --dp-clip 1 --dp-noise-multiplier 1, the unit's own uniform sampler), one rank; the round loop
without evaluation is compared (it includes the clipping norm per client, the noise draw per round and the
per-round epsilon on rank 0).

sample: one local step of batch 16 at length 128 (WU-A: tiny-bert; WU-C: MiniLM), measured side by side on
the same random batches, each mode in its own process (peak memory is the process's): non-private SGD,
fednlp's DP-SGD client (fednlp/privacy/sample_dp.py, each batch through its example_losses/backward as the
local trainer calls them) in every --dp-grad-sample mode, `hooks` (Opacus's per-example gradients +
DPOptimizer), `ghost` (Opacus's ghost clipping: per-example norms only, two backward passes) and `func`
(torch.func: vmap of grad over the trainable weights), and the textbook naive loop (one forward/backward per
example, clip, sum, noise). Reports s/step, examples/s, the ratio to non-private and peak memory. Every row is
appended to benchmarks/results.jsonl.

--freeze-layers K freezes the embeddings and blocks 1..K (fednlp's --freeze-layers); with --cache-frozen their
output is computed once per batch before timing and fed to every mode (fednlp's --cache-frozen,
fednlp/tasks/frozen_prefix.py), so a step runs only the trainable blocks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from benchmarks.run import RESULTS, UNITS, WORK, machine, prepare, run_federated

DP_FLAGS = ("--dp", "client", "--dp-clip", "1.0", "--dp-noise-multiplier", "1.0")


def client_level(units: list[str]) -> list[dict]:
    rows = []
    for name in units:
        unit = UNITS[name]
        data, part = prepare(unit)
        plain = run_federated(unit, data, part, 1)
        private = run_federated(unit, data, part, 1, DP_FLAGS)
        loops = [r["round_loop_s"] - r["timing_s"].get("evaluation", 0.0) for r in (plain, private)]
        rows.append({"bench": "dp_client", "unit": name, "fedavg_loop_s": round(loops[0], 2),
                     "dp_loop_s": round(loops[1], 2), "overhead": round(loops[1] / loops[0] - 1, 4),
                     "dp_epsilon": private["dp"]["epsilon"], "fedavg_value": plain["value"],
                     "dp_value": private["value"], "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    return rows


class _Classification:
    """The classification head's per-example loss (fednlp's TextClassification.example_losses, without its data)."""

    @staticmethod
    def example_losses(model, batch):
        import torch

        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        return torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")


def step_worker(model_name: str, mode: str, device: str, steps: int, batch: int, length: int, freeze: int = 0,
                cached: bool = False) -> dict:
    """One mode's step time, in this process (run by `sample_level` as a subprocess)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from fednlp.algorithms.fedavg import FedAvg
    from fednlp.config import TrainConfig
    from fednlp.privacy.sample_dp import with_sample_dp
    from fednlp.privacy.settings import SampleDPSettings
    from fednlp.tasks.frozen_prefix import FrozenPrefix
    from fednlp.tasks.models import build_auto_model

    torch.manual_seed(0)
    model = build_auto_model(AutoModelForSequenceClassification, model_name, num_labels=20).to(device)
    prefix = FrozenPrefix(model, freeze, model_name) if freeze else None  # frozen, in eval mode, like fednlp's
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01)
    clip, noise = 1.0, 1.0
    private = None
    if mode in ("hooks", "ghost", "func"):  # fednlp's own DP-SGD client, as `fednlp train --dp sample` builds it
        config = TrainConfig(data="d", partition="p", method="m", optimizer="sgd", lr=0.01)
        settings = SampleDPSettings(clip, noise, batch, 1, None, 1e-5, grad_sample_mode=mode)
        private = with_sample_dp(FedAvg, settings)(config)
        private.attach_model(model)
        optimizer = private.make_client_optimizer(params)
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    batches = [(torch.randint(1000, vocab, (batch, length), generator=generator),
                torch.randint(0, 20, (batch,), generator=generator)) for _ in range(steps + 1)]
    batches = [(ids.to(device), labels.to(device)) for ids, labels in batches]
    states = {}
    if cached:  # the frozen prefix's output of every batch, computed before timing (the cache's job)
        model.eval()
        states = {id(ids): prefix.run({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, model)
                  for ids, _ in batches}
        prefix.live_calls = 0  # count the timed steps' forwards, not the states' own
        model.train()

    def step(ids, labels):
        mask = torch.ones_like(ids)
        if cached:
            prefix.feed(ids, states[id(ids)])
        if private is not None:  # as the local trainer runs a DP-SGD step
            batch_dict = {"input_ids": ids, "attention_mask": mask, "labels": labels}
            private.backward(private.example_losses(_Classification, model, batch_dict))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return
        if mode != "naive":
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return
        summed = [torch.zeros_like(p) for p in params]
        for i in range(len(ids)):  # the textbook DP-SGD: one example at a time
            model(input_ids=ids[i : i + 1], attention_mask=mask[i : i + 1], labels=labels[i : i + 1]).loss.backward()
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
            factor = min(1.0, clip / (float(norm) + 1e-6))
            for s, p in zip(summed, params):
                s.add_(p.grad, alpha=factor)
                p.grad = None
        for s, p in zip(summed, params):
            p.grad = (s + torch.randn_like(s) * noise * clip) / len(ids)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(*batches[0])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for ids, labels in batches[1:]:
        step(ids, labels)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if prefix is not None and cached:
        assert prefix.live_calls == 0, "a timed forward ran the frozen prefix"
    return {"s_per_step": seconds, "examples_per_s": batch / seconds, "peak_mb": peak,
            "peak_kind": "cuda max allocated" if device == "cuda" else "process max RSS"}


MODES = ("plain", "hooks", "ghost", "func", "naive")


def sample_level(models: list[str], device: str, steps: int, batch: int, length: int, freeze: int = 0,
                 cached: bool = False, modes: tuple[str, ...] = MODES) -> list[dict]:
    rows = []
    for model in models:
        found = {}
        for mode in modes:
            n = max(1, steps // 4) if mode == "naive" else steps
            done = subprocess.run([sys.executable, "-m", "benchmarks.dp_speed", "_worker", model, mode, device,
                                   str(n), str(batch), str(length), str(freeze), str(int(cached))],
                                  capture_output=True, text=True,
                                  env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
            if done.returncode != 0:
                raise SystemExit(f"dp_speed: mode {mode} on {model} failed:\n{done.stderr[-2000:]}")
            found[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        for mode, numbers in found.items():
            rows.append({"bench": "dp_sample_step", "model": model, "mode": mode, "device": device, "batch": batch,
                         "length": length, "freeze_layers": freeze, "cache_frozen": cached,
                         **{k: round(v, 4) if isinstance(v, float) else v for k, v in numbers.items()},
                         "vs_plain": round(numbers["s_per_step"] / found["plain"]["s_per_step"], 2),
                         "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")})
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_worker":
        model, mode, device, steps, batch, length, freeze, cached = argv[1:]
        print(json.dumps(step_worker(model, mode, device, int(steps), int(batch), int(length), int(freeze),
                                     cached == "1")))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    client = sub.add_parser("client")
    client.add_argument("--units", nargs="+", default=["WU-A", "WU-B"], choices=sorted(UNITS))
    sample = sub.add_parser("sample")
    sample.add_argument("--models", nargs="+", default=["tiny-bert", "minilm"])
    sample.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    sample.add_argument("--steps", type=int, default=8)
    sample.add_argument("--batch", type=int, default=16)
    sample.add_argument("--length", type=int, default=128)
    sample.add_argument("--freeze-layers", type=int, default=0, help="freeze the embeddings and blocks 1..K")
    sample.add_argument("--cache-frozen", action="store_true", help="feed the frozen prefix's output (needs K > 0)")
    sample.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    args = parser.parse_args(argv)
    if args.what == "sample" and args.cache_frozen and args.freeze_layers <= 0:
        parser.error("--cache-frozen needs --freeze-layers K > 0")
    if args.what == "sample" and "plain" not in args.modes:
        parser.error("--modes must include plain (every ratio is to it)")
    WORK.mkdir(parents=True, exist_ok=True)
    rows = (client_level(args.units) if args.what == "client"
            else sample_level(args.models, args.device, args.steps, args.batch, args.length, args.freeze_layers,
                              args.cache_frozen, tuple(args.modes)))
    with open(RESULTS, "a") as f:
        for row in rows:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    for row in rows:
        print(json.dumps({k: v for k, v in row.items() if k not in ("machine",)}))


if __name__ == "__main__":
    sys.exit(main())
