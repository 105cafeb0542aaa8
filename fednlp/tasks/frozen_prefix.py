"""Cached frozen layers (`--cache-frozen` with `--freeze-layers K`): the embeddings and blocks 1..K run once per
example, not at every local step of every client.

A frozen prefix's output depends only on the example, so it is computed once, in eval mode (the frozen blocks
run without dropout), stored beside the feature cache and memory-mapped by every rank; training and evaluation
start at block K+1. Three parts:

- `FrozenPrefix` finds the prefix of a Hugging Face model (a BERT-family encoder: `embeddings` and
  `encoder.layer`; GPT-2: `wte`, `wpe`, `drop` and `h`), keeps it frozen and in eval mode, and patches the
  forwards of its modules (instances only: the state dict, save_pretrained and the heads stay as they are).
  When the model is called with the token ids of a batch that came with cached hidden states, the entry module
  (BERT's embeddings, GPT-2's token embedding) returns those states and blocks 1..K pass them through; any other
  call runs the prefix for real (in eval mode), so a forward is never wrong, only slower.
- `load_or_build_cache` writes the hidden states of every feature row (as wide as the features: a padded
  position's state matters too, e.g. QA's loss takes a softmax over every position) into one .npy file keyed by
  the features, the prefix's weights, K, the max length, the precision and the storage dtype; built once under a
  lock, sharded over the ranks, renamed into place when complete.
- `CachedPrefixFeatures` is the run's Features: each batch also hands its rows' hidden states to the prefix.

Every head works unchanged through this: classification, tagging and QA (encoder models), seq2seq (the
encoder's blocks; the decoder runs as before) and the LM (GPT-2's blocks, or a BERT decoder's).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import types
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from fednlp.errors import UserError
from fednlp.files import atomic_output
from fednlp.run.device import autocast
from fednlp.tasks.base import Features, Task
from fednlp.tasks.feature_cache import cache_path

#: --frozen-cache-dtype -> (numpy storage dtype, torch dtype it holds). numpy has no bfloat16: its bits lie in int16.
STORAGE = {"bf16": (np.int16, torch.bfloat16), "fp16": (np.float16, torch.float16), "fp32": (np.float32, torch.float32)}
FORMAT = 1  # bump when what a cache file holds changes


@dataclass
class Layout:
    """Where a model's prefix lies. `entry` is the module whose output becomes the cached states; `zeroed` the
    modules whose output is added to it (GPT-2's position embedding: it returns zeros when the states are fed);
    `modules` every non-block module of the prefix (run in eval mode, frozen, checksummed)."""

    name: str
    entry: torch.nn.Module
    zeroed: list[torch.nn.Module]
    modules: list[torch.nn.Module]
    blocks: torch.nn.ModuleList


def find_layout(model: torch.nn.Module, model_name: str) -> Layout:
    """The prefix of `model`'s encoder (seq2seq: its encoder's), or a one-line UserError where there is none."""
    config = getattr(model, "config", None)
    base = model.get_encoder() if getattr(config, "is_encoder_decoder", False) else getattr(model, "base_model", model)
    encoder_layers = getattr(getattr(base, "encoder", None), "layer", None)
    if isinstance(getattr(base, "embeddings", None), torch.nn.Module) and isinstance(encoder_layers, torch.nn.ModuleList):
        return Layout("bert", base.embeddings, [], [base.embeddings], encoder_layers)
    if all(isinstance(getattr(base, n, None), torch.nn.Module) for n in ("wte", "wpe", "drop")) \
            and isinstance(getattr(base, "h", None), torch.nn.ModuleList):
        return Layout("gpt2", base.wte, [base.wpe], [base.wte, base.wpe, base.drop], base.h)
    kind = getattr(config, "model_type", type(model).__name__)
    raise UserError(f"--cache-frozen: --model {model_name!r} ({kind}) has no frozen prefix it can cache; expected a "
                    "BERT-family encoder or GPT-2 (or leave --cache-frozen off)")


_ATTACHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its FrozenPrefix


def prefix_of(model: torch.nn.Module) -> FrozenPrefix | None:
    """The cached prefix attached to `model`, if any (DP-SGD's torch.func mode feeds each example its own states)."""
    return _ATTACHED.get(model)


class FrozenPrefix:
    """The embeddings and first `k` blocks of a model, frozen, in eval mode, fed from a cache when it can."""

    def __init__(self, model: torch.nn.Module, k: int, model_name: str):
        self.layout = layout = find_layout(model, model_name)
        self.k = k
        first_list = next(m for m in model.modules() if isinstance(m, torch.nn.ModuleList))
        if first_list is not layout.blocks:  # --freeze-layers freezes the first list of blocks: the same ones
            raise UserError(f"--cache-frozen: the blocks --freeze-layers freezes in --model {model_name!r} are not "
                            "its encoder's; leave --cache-frozen off")
        if k > len(layout.blocks):
            raise UserError(f"--freeze-layers {k} exceeds the model's {len(layout.blocks)} transformer blocks")
        self.modules = layout.modules + list(layout.blocks)[:k]
        self._feed: tuple[torch.Tensor, torch.Tensor] | None = None
        self._fed = False  # set by the entry module on every forward: whether blocks 1..k pass through
        self.fed_calls = self.live_calls = 0
        for module in self.modules:
            module.requires_grad_(False)  # GPT-2's position embedding too: it is part of what is cached
            _keep_in_eval(module)
            module.eval()
        self._patch()
        _ATTACHED[model] = self

    # ---------------------------------------------------------------- forwards

    def _patch(self) -> None:
        entry, real_entry = self.layout.entry, self.layout.entry.forward

        def entry_forward(*args: Any, **kwargs: Any) -> torch.Tensor:
            ids = kwargs.get("input_ids", args[0] if args else None)
            fed = self._states_for(ids)
            self._fed = fed is not None
            if fed is None:
                self.live_calls += 1
                return real_entry(*args, **kwargs)
            self.fed_calls += 1
            return fed

        entry.forward = entry_forward
        for module in self.layout.zeroed:
            real = module.forward
            module.forward = lambda *a, _real=real, **kw: _real(*a, **kw).mul(0.0) if self._fed else _real(*a, **kw)
        for block in list(self.layout.blocks)[: self.k]:
            real = block.forward
            block.forward = lambda *a, _real=real, **kw: (a[0] if a else kw["hidden_states"]) if self._fed \
                else _real(*a, **kw)

    def feed(self, input_ids: torch.Tensor, states: torch.Tensor) -> None:
        """The next forward on `input_ids` (or on a slice of its rows) starts from `states` [rows, width, hidden]."""
        self._feed = (input_ids, states)

    def _states_for(self, ids: Any) -> torch.Tensor | None:
        """The fed states of `ids`: the fed batch's token ids themselves, or a view of some of its rows (the LM
        head scores a batch a few rows at a time); None for anything else."""
        if self._feed is None or not isinstance(ids, torch.Tensor):
            return None
        fed_ids, states = self._feed
        if ids is fed_ids:
            return states
        if (ids.dim() == 2 and ids.shape[1] == fed_ids.shape[1] and ids.stride() == fed_ids.stride()
                and ids.untyped_storage().data_ptr() == fed_ids.untyped_storage().data_ptr()):
            start, rest = divmod(ids.storage_offset() - fed_ids.storage_offset(), fed_ids.stride(0))
            if rest == 0 and 0 <= start and start + ids.shape[0] <= fed_ids.shape[0]:
                return states[start : start + ids.shape[0]]
        return None

    # ---------------------------------------------------------------- the cache's contents

    @torch.no_grad()
    def run(self, base_inputs: dict[str, torch.Tensor], model: torch.nn.Module) -> torch.Tensor:
        """The prefix's output for one batch, [rows, width, hidden]: the model runs until block k's input (or
        the last block's output) and stops there."""
        blocks, captured = self.layout.blocks, []

        def stop(states: torch.Tensor) -> None:
            captured.append(states)
            raise _Captured

        if self.k < len(blocks):
            handle = blocks[self.k].register_forward_pre_hook(
                lambda m, args, kwargs: stop(args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
        else:
            handle = blocks[self.k - 1].register_forward_hook(lambda m, args, out: stop(out))
        self._feed = None
        try:
            model(**base_inputs)
        except _Captured:
            pass
        finally:
            handle.remove()
        return captured[0]

    def checksum(self) -> str:
        """sha256 of the prefix's weights (what the cached states depend on besides the inputs)."""
        digest = hashlib.sha256(f"{self.layout.name}:{self.k}".encode())
        for module in self.modules:
            for name, tensor in module.state_dict(keep_vars=False).items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()


class _Captured(Exception):
    """Ends a forward once the prefix's output is known (the rest of the model is not needed)."""


def _keep_in_eval(module: torch.nn.Module) -> None:
    """`model.train()` leaves this module in eval mode: frozen blocks run without dropout, as they were cached."""
    module.train = types.MethodType(lambda self, mode=True: torch.nn.Module.train(self, False), module)


# ---------------------------------------------------------------- the cache file


def frozen_cache_path(prefix: FrozenPrefix, task: Task, data_path: str | os.PathLike, precision: str,
                      dtype: str, features: Features) -> Path:
    """In the feature cache's folder, keyed by the features' content (the token arrays themselves, so two data
    files with the same examples in the same order share one cache: a validation file carved by `fednlp data
    validation-split` shares its source's), the tokenizer and max length, the prefix's weights and K, the
    precision it was computed in and the storage dtype."""
    content = hashlib.sha256()
    for name in sorted(features.arrays):
        if name in features.sequence_arrays:
            array = np.ascontiguousarray(features.arrays[name])
            content.update(f"{name}{array.dtype}{array.shape}".encode())
            content.update(array.tobytes())
    tok = task.tokenizer
    key_source = json.dumps({"features": content.hexdigest(), "task": task.name,
                             "tokenizer": [type(tok).__name__, getattr(tok, "name_or_path", ""), len(tok)],
                             "prefix": prefix.checksum(), "k": prefix.k,
                             "max_length": task.max_length, "precision": precision, "dtype": dtype,
                             "format": FORMAT}, sort_keys=True)
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    return cache_path(task, data_path).parent / f"states.frozen{prefix.k}-{task.name}-{dtype}-{key}.npy"


def load_or_build_cache(prefix: FrozenPrefix, model: torch.nn.Module, task: Task, features: Features, config: Any,
                        comm: Any, device: torch.device) -> np.ndarray:
    """The memory-mapped states of every feature row, [rows, width, hidden] in the storage dtype; built once
    (under a lock, each rank computing a share of the rows) where no process built it before."""
    dtype = config.frozen_cache_dtype
    path = frozen_cache_path(prefix, task, config.data, config.precision, dtype, features)
    shape = cache_shape(prefix, features)
    start = time.perf_counter()
    with _build_lock(path, comm.rank == 0):
        build = comm.broadcast(not path.exists() if comm.rank == 0 else None)
        if build:
            build_cache_file(prefix, model, features, path, config, comm, device)
    comm.barrier()  # rank 0 has renamed the file into place
    states = np.load(path, mmap_mode="r")
    if states.shape != shape:
        raise UserError(f"the frozen-layer cache {path} holds {states.shape}, expected {shape}; delete it")
    if comm.rank == 0:
        what = f"built in {time.perf_counter() - start:.1f}s" if build else "reused"
        print(f"frozen layers: embeddings + {prefix.k} blocks cached for {shape[0]} rows in {path} "
              f"({path.stat().st_size / 2**20:.1f} MiB, {dtype}), {what}", flush=True)
    return states


def cache_shape(prefix: FrozenPrefix, features: Features) -> tuple[int, int, int]:
    """[rows, the features' width, hidden size]."""
    return features.n_rows, features.arrays["input_ids"].shape[1], _hidden_size(prefix)


def build_cache_file(prefix: FrozenPrefix, model: torch.nn.Module, features: Features, path: Path, config: Any,
                     comm: Any, device: torch.device) -> None:
    """Write the states of every row of `features` to `path` (--frozen-cache-dtype, computed in --precision):
    rank 0 makes the file beside `path`, every rank fills its share of the rows, rank 0 renames it."""
    shape, storage = cache_shape(prefix, features), STORAGE[config.frozen_cache_dtype][0]
    with atomic_output(path, suffix=".npy") if comm.rank == 0 else _nothing() as tmp:
        if comm.rank == 0:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=storage, shape=shape).flush()
        tmp = comm.broadcast(str(tmp) if comm.rank == 0 else None)
        out = np.load(tmp, mmap_mode="r+")
        mine = np.array_split(np.arange(shape[0]), comm.world_size)[comm.rank]
        model.eval()
        for i in range(0, len(mine), config.eval_batch_size):
            rows = mine[i : i + config.eval_batch_size]
            full = {name: torch.from_numpy(features.arrays[name][rows].astype(np.int64)).to(device)
                    for name in ("input_ids", "attention_mask", "token_type_ids") if name in features.arrays}
            with autocast(device, config.precision):
                states = prefix.run(full, _base(model, prefix))
            out[rows[0] : rows[-1] + 1] = _to_storage(states, storage)
        out.flush()
        del out
        comm.barrier()  # every share written before rank 0 renames the file


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _base(model: torch.nn.Module, prefix: FrozenPrefix) -> torch.nn.Module:
    """The module that takes the token ids and runs the prefix: the encoder of a seq2seq model, else the model."""
    return model.get_encoder() if getattr(model.config, "is_encoder_decoder", False) else model


def _hidden_size(prefix: FrozenPrefix) -> int:
    entry = prefix.layout.entry
    weight = getattr(entry, "weight", None)
    if weight is None:
        weight = entry.word_embeddings.weight
    return int(weight.shape[1])


def _to_storage(states: torch.Tensor, storage: Any) -> np.ndarray:
    if storage is np.int16:
        return states.to(torch.bfloat16).view(torch.int16).cpu().numpy()
    return states.to(torch.float16 if storage is np.float16 else torch.float32).cpu().numpy()


@contextmanager
def _build_lock(path: Path, take: bool) -> Iterator[None]:
    """An exclusive flock beside the cache, waited for (another run building the same cache finishes it, then
    this one reuses it); only rank 0 takes it, the kernel drops it if its holder dies."""
    if not take:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the run's features


@dataclass
class CachedPrefixFeatures(Features):
    """Features whose every batch also feeds its rows' cached prefix states to the model."""

    states: np.ndarray | None = None
    prefix: FrozenPrefix | None = None
    model_dtype: torch.dtype = torch.float32

    def batch(self, rows: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        batch = super().batch(rows, device)
        width = batch["input_ids"].shape[1]
        part = np.ascontiguousarray(self.states[np.asarray(rows), :width])  # only the batch's width is read
        states = torch.from_numpy(part)
        if part.dtype == np.int16:
            states = states.view(torch.bfloat16)
        self.prefix.feed(batch["input_ids"], states.to(device, non_blocking=True).to(self.model_dtype))
        return batch


def cached_prefix_features(model: torch.nn.Module, task: Task, features: Features, config: Any, comm: Any,
                           device: torch.device) -> Features:
    """The run's features under `--cache-frozen`: the prefix attached to `model` (on `device`) and cached."""
    prefix = FrozenPrefix(model, config.freeze_layers, config.model)
    states = load_or_build_cache(prefix, model, task, features, config, comm, device)
    prefix.fed_calls = prefix.live_calls = 0  # count the run's forwards, not the cache's
    base = {f.name: getattr(features, f.name) for f in fields(Features)}
    dtype = next(p.dtype for p in model.parameters())
    return CachedPrefixFeatures(**base, states=states, prefix=prefix, model_dtype=dtype)
