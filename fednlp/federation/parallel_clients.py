"""--parallel-clients N: a rank trains its clients of a round N at a time, one vectorised step for the group.

The group's trainable weights are stacked ([G, n]: row g is client g, all starting from the global weights)
with their optimizer state (fednlp/federation/stacked_optim.py), and each local step is one call of
torch.func.vmap(grad(loss)) over the rows: torch.func.functional_call runs the task's own loss (Task.loss) on
the one model with row g's weights and client g's own batch (fednlp/federation/group_batches.py). Everything
else is the sequential path's: each client's rows and batch plan (local_batches, the same pure function of
(seed, round, client)), its step count (a client with fewer steps stops moving after its last, exactly), the
FedProx gradient hook, --max-grad-norm, and after the group its delta goes through the same client-update
object (ClientUpdate, the sparse embedding rows included) into process_client_update and the round's buffer.
So FedAvg, FedProx, FedOpt and client-level DP (which clips in process_client_update) need nothing new.

The word embedding is looked up outside vmap (vmap's embedding backward builds a one-hot matrix per client):
the group's rows are gathered from the stacked table, their gradient scattered back (padding_idx's zeroed, as
nn.Embedding does). Where the sparse embedding path is on (fednlp/federation/client_updates.py), a client's
table is only the rows it reads this round, gathered once: the others provably never move.

Attention runs transformers' eager implementation inside the group (SDPA has no vmap rule on the CPU) with
the mask built outside vmap. Dropout: vmap draws each client's masks independently (randomness="different")
from a generator seeded by the group's first client; they are not the sequential path's masks, so a run with
dropout is reproducible for a fixed world size and N, and equals the sequential run in distribution only. With
dropout 0 (or frozen blocks in eval mode) the weights are the sequential path's to float rounding. Under
`--precision bf16` the group step runs under the same autocast as the sequential path; bf16 rounds each matmul's
inputs, so the two then agree as closely as bf16 does with fp32, not to float rounding.

Where the group step cannot honour the run (`unsupported`), the run trains one client at a time and
result.json's "parallel_clients" block says why.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from fednlp.algorithms.fedprox import FedProx
from fednlp.algorithms.interface import Algorithm, ClientUpdate
from fednlp.federation.client_updates import touched_rows
from fednlp.federation.group_batches import additive_mask, stack_batches
from fednlp.federation.local_batches import local_batches
from fednlp.federation.stacked_optim import StackedOptimizer, clip_stacked_
from fednlp.run.device import autocast

if TYPE_CHECKING:
    from fednlp.federation.round_plan import RoundPlan
    from fednlp.federation.runtime import Federation

#: Gradient hooks known to be elementwise in (w, w_global), so they apply to stacked rows unchanged.
ELEMENTWISE_GRADIENT_HOOKS = (Algorithm.adjust_gradients, FedProx.adjust_gradients)


def unsupported(federation: Federation) -> str | None:
    """Why this run cannot train its clients in groups, or None."""
    algorithm, config, model = federation.algorithm, federation.config, federation.session.model
    kind = type(algorithm)
    if algorithm.per_example_loss:
        return "per-example losses (sample-level DP-SGD) run one client at a time"
    if kind.client_batches is not Algorithm.client_batches:
        return "the algorithm plans its own local batches (client_batches)"
    if kind.make_client_optimizer is not Algorithm.make_client_optimizer:
        return "the algorithm builds its own client optimizer (make_client_optimizer)"
    if kind.adjust_gradients not in ELEMENTWISE_GRADIENT_HOOKS:
        return "the algorithm's adjust_gradients hook is not known to act on each weight alone"
    if algorithm.needs_global_loss:
        return "the algorithm needs each client's loss at the global weights (needs_global_loss)"
    if config.precision == "fp16":
        return "--precision fp16: the group step has no GradScaler (bf16 and fp32 run grouped)"
    if config.cache_frozen:
        return "--cache-frozen: the cached prefix states are fed by patched forwards the group step does not run"
    if not federation.session.task.loss_ignores_padding:
        return (f"the {federation.session.task.name} head's loss depends on how wide a batch is padded (a group pads "
                f"its clients' batches to one width)")
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder models (seq2seq): the loss cuts each batch's targets by their values"
    if "eager" not in _attention_implementations(model):
        return f"{type(model).__name__} has no eager attention to run under torch.vmap"
    return None


def _attention_implementations(model: torch.nn.Module) -> tuple[str, ...]:
    try:
        current = model.config._attn_implementation
        model.set_attn_implementation("eager")
        model.set_attn_implementation(current)
        return ("eager", current)
    except (AttributeError, ValueError, ImportError):
        return ()


class ParallelClients:
    """The rank's clients of a round as ClientUpdates, one at a time (N = 1 or a fallback) or N at once."""

    def __init__(self, federation: Federation):
        self.federation = federation
        self.requested = federation.config.parallel_clients
        self.fallback = unsupported(federation) if self.requested > 1 else None
        self.used = 1 if self.fallback is not None else self.requested
        self.group = GroupTrainer(federation) if self.used > 1 else None

    def record(self) -> dict[str, Any]:
        """result.json's "parallel_clients" block."""
        return {"requested": self.requested, "used": self.used, "fallback": self.fallback}

    def updates(self, plan: RoundPlan, rank: int) -> Iterator[ClientUpdate]:
        """The update of each client `rank` trains this round, in turn; it lies in the model's buffer until the
        next one is asked for (the caller accumulates it first)."""
        clients = [client for client in plan.shares[rank] if client in plan.active]
        if self.group is None:
            for client in clients:
                yield self.federation.train_client(client, plan)
            return
        yield from self.group.updates(clients, plan, self.used)


class _TaskLoss(torch.nn.Module):
    """The head's batch loss as a module, so functional_call can swap the model's weights under it."""

    def __init__(self, task: Any, model: torch.nn.Module):
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(self.model, batch)


#: A client's work in a round: (client, its feature rows, its dropout seed, its local batches).
Work = tuple[int, np.ndarray, int, list[np.ndarray]]


class GroupTrainer:
    """Trains a rank's clients of a round in groups on the federation's one model (module docstring)."""

    def __init__(self, federation: Federation):
        self.fed = federation
        session, flat = federation.session, federation.flat
        self.model, self.features, self.config = session.model, session.features, federation.config
        self.loss_module = _TaskLoss(session.task, self.model)
        names = {id(p): name for name, p in self.model.named_parameters()}
        self.word = self.model.get_input_embeddings()
        table = self.word.weight
        self.table_trainable = any(p is table for p in flat.params)
        self.compact = federation.client_updates.sparse  # only the rows a client reads are its own
        start = flat.offset_of(table) if self.table_trainable else 0
        self.table_span = (start, start + table.numel())
        # The stacked weights' columns: all of the flat buffer, or all but the table (compact tables apart).
        self.dense = ([slice(0, start), slice(start + table.numel(), flat.numel)] if self.compact
                      else [slice(0, flat.numel)])
        # functional_call's dict: every stacked weight, a view of its own columns of the stacked rows. The weights
        # go into the vmapped gradient as these separate views, so each gradient comes back on its own and the
        # optimizer steps each view in place: no [G, n] gradient is put together (torch.split's backward was a
        # cat of the whole stacked gradient: 96 MB a step for WU-B's 50 clients; benchmarks/README.md).
        self.layout = [(f"model.{names[id(p)]}", p.shape) for p in flat.params if not (self.compact and p is table)]
        self.sizes = [int(np.prod(shape)) for _, shape in self.layout]
        self.columns = [slice(int(a), int(a) + n) for a, n in zip(np.cumsum([0, *self.sizes[:-1]]), self.sizes)]
        # The table's piece when it is one of the stacked weights (its gradient is scattered in by hand).
        self.table_piece = next((i for i, (name, _) in enumerate(self.layout) if name == f"model.{names[id(table)]}"),
                                None)
        self._rows: torch.Tensor | None = None  # the stacked rows, kept across groups (no fresh pages per round)
        # transformers' attention modules say whether they mask the future (GPT-2's config has no is_decoder).
        self.causal = any(getattr(module, "is_causal", False) is True for module in self.model.modules())
        self.optimizer = StackedOptimizer(self.config.optimizer, self.config.lr, self.config.weight_decay)
        self.prox = type(federation.algorithm).adjust_gradients is not Algorithm.adjust_gradients
        self.unused: list[slice] | None = None  # weights the loss never reaches (see _unused_spans)
        self._lookup: list[torch.Tensor] = []
        self._step = vmap(grad_and_value(self._loss, argnums=(0, 1) if self.table_trainable else 0),
                          in_dims=(0, 0 if self.table_trainable else None, 0), randomness="different")

    def _loss(self, pieces: tuple[torch.Tensor, ...], embedded: torch.Tensor | None, batch: dict[str, torch.Tensor]
              ) -> torch.Tensor:
        params = {name: piece for (name, _), piece in zip(self.layout, pieces)}
        self._lookup[:] = [] if embedded is None else [embedded]  # what the word embedding returns (_group_forward)
        return functional_call(self.loss_module, params, (batch,))

    def _dense_of(self, flat: torch.Tensor) -> torch.Tensor:
        return torch.cat([flat[part] for part in self.dense]) if self.compact else flat

    def _pieces(self, rows: torch.Tensor) -> list[torch.Tensor]:
        """Each weight's view of the stacked rows [G, n] (or of one row [n]): [G, *shape] (or its shape)."""
        lead = rows.shape[:-1]
        return [rows[..., part].view(*lead, *shape) for part, (_, shape) in zip(self.columns, self.layout)]

    def _stacked_rows(self, dense_global: torch.Tensor, size: int) -> torch.Tensor:
        """The group's rows [size, n], each the global weights, in a buffer reused from group to group."""
        if self._rows is None or self._rows.shape[0] < size or self._rows.device != dense_global.device:
            self._rows = torch.empty(size, dense_global.numel(), dtype=dense_global.dtype, device=dense_global.device)
        rows = self._rows[:size]
        rows.copy_(dense_global.expand(size, -1))
        return rows

    # -- a round ---------------------------------------------------------------------------------------
    def updates(self, clients: list[int], plan: RoundPlan, size: int) -> Iterator[ClientUpdate]:
        fed = self.fed
        work: list[Work] = []
        for client in clients:
            rows = fed.data.rows(client, plan.round_idx)
            seed, batches = local_batches(fed.algorithm, self.config, client, plan.round_idx, len(rows))
            work.append((client, rows, seed, batches))
        work.sort(key=lambda w: -len(w[3]))  # similar step counts together: less masked work (stable: by client)
        for i in range(0, len(work), size):
            yield from self._group(work[i : i + size], plan)

    def _group(self, work: list[Work], plan: RoundPlan) -> Iterator[ClientUpdate]:
        fed, timer = self.fed, self.fed.session.timer
        start = time.perf_counter()
        steps = [len(batches) for _, _, _, batches in work]
        ids = self.features.arrays["input_ids"]
        seen = [touched_rows(ids[rows[np.concatenate(batches)]]) for _, rows, _, batches in work]
        dense_global = self._dense_of(fed.global_flat)
        stacked = self._stacked_rows(dense_global, len(work))
        tables, own_rows = self._tables(stacked, seen)
        state = self._pieces(stacked) + ([tables] if self.compact else [])
        self.optimizer.reset(state)
        globals_ = self._pieces(dense_global) + ([self._global_rows(own_rows)] if self.compact else [])
        if self.unused is None and self.config.weight_decay != 0:
            _, rows, _, batches = work[0]
            self.unused = self._unused_spans(self.features.batch(rows[batches[0]], stacked.device))
        timer.add("weight_copy", start)
        self.model.train()
        torch.manual_seed(work[0][2])  # the group's dropout stream (module docstring)
        first = last = None
        total = torch.zeros(len(work), device=stacked.device)
        with self._group_forward():
            for step in range(max(steps)):
                active = torch.tensor([step < n for n in steps], device=stacked.device)
                loss = self._one_step(work, step, stacked, tables, own_rows, state, globals_, active, dense_global)
                first = loss if first is None else first
                last = torch.where(active, loss, last) if last is not None else loss
                total += torch.where(active, loss, torch.zeros_like(loss))
        fed.trainer.steps_done += sum(steps)
        fed.trainer.examples_done += sum(len(b) for *_, batches in work for b in batches)
        for g, (client, rows, _, _) in enumerate(work):
            start = time.perf_counter()
            parts = self._delta(stacked[g], None if tables is None else tables[g], seen[g])
            timer.add("aggregation", start)
            yield ClientUpdate(client, plan.weight_of(client), len(rows), steps[g], float(first[g]),
                               float(total[g] / steps[g]), float(last[g]), parts, fed.buffer.slot_values,
                               fed.buffer.slot_index, None)

    def _tables(self, stacked: torch.Tensor, seen: list[np.ndarray]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Each client's word-embedding table ([G, rows, width]) and, compact, which global rows it holds."""
        if not self.table_trainable:
            return None, None
        width = self.word.weight.shape[1]
        if not self.compact:  # a view into the stacked weights: the lookup reads, the scatter adds to its gradient
            start, end = self.table_span
            return stacked[:, start:end].view(len(seen), -1, width), None
        longest = max(len(s) for s in seen)
        own = torch.stack([torch.from_numpy(np.pad(s, (0, longest - len(s)), mode="edge")) for s in seen])
        own = own.to(stacked.device)
        return self._global_rows(own).clone(), own

    def _global_rows(self, own_rows: torch.Tensor) -> torch.Tensor:
        start, end = self.table_span
        return self.fed.global_flat[start:end].view(-1, self.word.weight.shape[1])[own_rows]

    def _one_step(self, work: list[Work], step: int, stacked: torch.Tensor, tables: torch.Tensor | None,
                  own_rows: torch.Tensor | None, state: list[torch.Tensor], globals_: list[torch.Tensor],
                  active: torch.Tensor, dense_global: torch.Tensor) -> torch.Tensor:
        timer = self.fed.session.timer
        start = time.perf_counter()
        device = stacked.device
        # A client past its last step repeats its last batch: real data (no NaN), its step is undone.
        batches = [self.features.batch(rows[plan[min(step, len(plan) - 1)]], device) for _, rows, _, plan in work]
        batch = stack_batches(batches, self.features.sequence_arrays)
        batch["attention_mask"] = additive_mask(batch["attention_mask"], self.causal, stacked.dtype)
        group = torch.arange(len(work), device=device)[:, None, None]
        index = None
        if tables is not None:
            index = batch["input_ids"]
            if own_rows is not None:  # positions in each client's own rows (an added pad id maps anywhere: no grad)
                index = torch.searchsorted(own_rows, index.flatten(1)).view_as(index).clamp_(max=own_rows.shape[1] - 1)
        start = timer.add("data_loading", start)
        embedded = None if tables is None else tables[group, index]
        pieces = tuple(state[: len(self.layout)])
        with autocast(device, self.config.precision):  # bf16: the sequential path's autocast, around the group
            if tables is not None:
                (grad, grad_embedded), loss = self._step(pieces, embedded, batch)
            else:
                grad, loss = self._step(pieces, None, batch)
                grad_embedded = None
        grads = list(grad) if grad_embedded is None else self._with_table_gradient(
            list(grad), grad_embedded, tables, (group, index), batch["input_ids"])
        if self.prox:  # the algorithm's own elementwise hook (FedProx: mu (w - w_global)) on the stacked rows
            for tensor, g in zip(state, grads):
                tensor.grad = g
            self.fed.algorithm.adjust_gradients(state, [g.expand_as(t) for g, t in zip(globals_, state)])
            for tensor in state:
                tensor.grad = None
        if self.config.max_grad_norm is not None:
            clip_stacked_(grads, self.config.max_grad_norm)
        self.optimizer.step(state, grads, active)
        for span in self.unused or ():  # see _unused_spans
            stacked[:, span] = dense_global[span]
        timer.add("local_training", start)
        return loss

    def _with_table_gradient(self, grads: list[torch.Tensor], grad_embedded: torch.Tensor, tables: torch.Tensor,
                             where: tuple[torch.Tensor, torch.Tensor], input_ids: torch.Tensor) -> list[torch.Tensor]:
        """The looked-up rows' gradient scattered into the tables (summed over repeated tokens, as nn.Embedding's
        backward does): a gradient of its own for compact tables, else added into the table's own piece's."""
        if self.word.padding_idx is not None:  # nn.Embedding never moves its padding row
            grad_embedded = grad_embedded.masked_fill((input_ids == self.word.padding_idx)[..., None], 0)
        if self.compact:
            return grads + [torch.zeros_like(tables).index_put_(where, grad_embedded, accumulate=True)]
        grads[self.table_piece].view_as(tables).index_put_(where, grad_embedded, accumulate=True)
        return grads

    def _unused_spans(self, batch: dict[str, torch.Tensor]) -> list[slice]:
        """Weights the loss never reaches (a pooler a head skips) have no gradient in the sequential path, and its
        optimizer leaves them alone; here they get a zero gradient, which weight decay alone would act on, so
        they are put back after each step. Found by one backward of the head's loss on the model itself."""
        self.model.zero_grad(set_to_none=True)
        self.loss_module(batch).backward()
        spans, offset = [], 0
        for p in self.fed.flat.params:
            if self.compact and p is self.word.weight:
                continue
            if p.grad is None:
                spans.append(slice(offset, offset + p.numel()))
            offset += p.numel()
        self.model.zero_grad(set_to_none=True)
        return spans

    def _delta(self, weights: torch.Tensor, table: torch.Tensor | None, seen: np.ndarray) -> list[torch.Tensor]:
        """A client's weights into the model's buffer, turned into its delta by the sequential path's own code."""
        flat, updates = self.fed.flat.flat, self.fed.client_updates
        if not self.compact:
            flat.copy_(weights)
            return updates.delta(None)
        updates.load_global()  # dense part and the previous client's rows back to the global weights
        offset = 0
        for part in self.dense:
            n = part.stop - part.start
            flat[part].copy_(weights[offset : offset + n])
            offset += n
        start, end = self.table_span
        rows = torch.from_numpy(seen).to(flat.device)
        flat[start:end].view(-1, table.shape[1])[rows] = table[: len(seen)]
        return updates.delta(seen)

    @contextmanager
    def _group_forward(self) -> Iterator[None]:
        """Eager attention (SDPA has no vmap rule on the CPU) and the word embedding returning the looked-up rows
        of the client being traced; the model's own forward afterwards (evaluation, the next sequential run)."""
        previous = self.model.config._attn_implementation
        self.model.set_attn_implementation("eager")
        if self.table_trainable:
            self.word.forward = lambda *args, **kwargs: self._lookup[0]
        try:
            yield
        finally:
            self.model.set_attn_implementation(previous)
            if self.table_trainable:
                del self.word.forward
