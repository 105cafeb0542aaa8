"""The partitioners' math: pure, vectorised numpy functions over positions 0..n-1.

Every function takes its randomness from the `numpy.random.Generator` passed in, returns arrays of
positions (the caller maps them to data-file indices), and runs in a bounded number of vectorised
steps: nothing here resamples until a condition holds, so no parameter value can make it hang
(FedNLP's quantity partitioner and FedLab's Dirichlet partitioner resample and can loop forever).
"""

from __future__ import annotations

import numpy as np

Positions = list[np.ndarray]

#: Dirichlet concentrations are clipped into this range: below it alpha * p underflows to zero (no
#: skew at all), above it the gamma draws overflow. Both ends already give the limit behaviour.
_CONCENTRATION_RANGE = (1e-300, 1e300)


def largest_remainder_rows(weights: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """Round each row of `weights` * totals/row-sum to integers summing exactly to its total.

    Hamilton's largest-remainder method, row-wise: floors first, then one more unit to the entries
    with the largest fractional parts (ties to the lower column). Zero weights never receive a unit.
    Rows whose weights are all zero get all zeros, so their totals must be zero.
    """
    weights = np.asarray(weights, dtype=np.float64)
    totals = np.asarray(totals, dtype=np.int64)
    row_sums = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        exact = np.where(row_sums > 0, weights / row_sums, 0.0) * totals[:, None]
    counts = np.floor(exact).astype(np.int64)
    short = totals - counts.sum(axis=1)
    fractions = np.where(weights > 0, exact - counts, -1.0)
    order = np.argsort(-fractions, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(weights.shape[1])[None, :].repeat(len(weights), axis=0), axis=1)
    return counts + (rank < short[:, None])


def largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """One vector of weights rounded to integers that sum exactly to `total`."""
    return largest_remainder_rows(np.asarray(weights, dtype=np.float64)[None, :], np.array([total]))[0]


def equal_sizes(n: int, n_clients: int) -> np.ndarray:
    """n split into n_clients sizes that differ by at most one (the larger ones first)."""
    return np.full(n_clients, n // n_clients, dtype=np.int64) + (np.arange(n_clients) < n % n_clients)


def split_by_owner(owner: np.ndarray, n_clients: int) -> Positions:
    """Positions grouped by owning client, each client's positions in ascending order."""
    order = np.argsort(owner, kind="stable")
    counts = np.bincount(owner, minlength=n_clients)
    return np.split(order, np.cumsum(counts)[:-1])


def split_by_sizes(n: int, sizes: np.ndarray, rng: np.random.Generator) -> Positions:
    """A random permutation of 0..n-1 cut into consecutive pieces of the given sizes."""
    owner = np.empty(n, dtype=np.int64)
    owner[rng.permutation(n)] = np.repeat(np.arange(len(sizes)), sizes)
    return split_by_owner(owner, len(sizes))


def uniform_split(n: int, n_clients: int, rng: np.random.Generator) -> Positions:
    """IID: a random permutation cut into n_clients pieces of equal size (within one)."""
    return split_by_sizes(n, equal_sizes(n, n_clients), rng)


def quantity_proportions(n_clients: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Client size proportions drawn from Dir(beta * 1), as in FedNLP's niid_quantity."""
    return rng.dirichlet(np.full(n_clients, np.clip(float(beta), *_CONCENTRATION_RANGE)))


def quantity_sizes(n: int, proportions: np.ndarray, min_size: int = 1) -> np.ndarray:
    """Client sizes following `proportions`, every client getting at least `min_size` (when n allows).

    FedNLP resampled the proportions until every client had enough examples, which never ends at
    small beta; instead the floor is given first and only the rest follows the proportions.
    """
    n_clients = len(proportions)
    floor = min_size if n >= min_size * n_clients else 0
    return floor + largest_remainder(proportions, n - floor * n_clients)


def dirichlet_mixes(label_counts: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator) -> np.ndarray:
    """Each client's label mix drawn from Dir(alpha * p), p the global label distribution.

    This is FedNLP's label skew (Lin et al. 2022, "FedNLP", section 3.2): the prior is scaled by the
    global distribution, so rare labels stay rare on average. Labels absent from the data get weight 0.
    """
    label_counts = np.asarray(label_counts, dtype=np.float64)
    present = label_counts > 0
    concentration = np.clip(float(alpha) * (label_counts / label_counts.sum()), *_CONCENTRATION_RANGE)
    mixes = np.zeros((n_clients, len(label_counts)))
    mixes[:, present] = rng.dirichlet(concentration[present], size=n_clients)
    return mixes


def label_quotas(
    sizes: np.ndarray, mixes: np.ndarray, label_counts: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """How many examples of each label each client gets: a clients x labels integer matrix.

    Row k sums to sizes[k], column l to label_counts[l], and rows follow `mixes` as closely as the
    label supply allows. Each round, every client asks for its remaining need split by its mix over
    the labels still available (largest-remainder rounding); the clients are served in a fresh random
    order, so where a label runs out the clients served first get their whole ask and the rest ask
    again next round among the labels left, still in proportion to their mix (FedNLP served clients
    in id order, one at a time). A round either satisfies every client or exhausts at least one
    label, so there are at most (labels + 1) rounds whatever the mixes. A client whose mix puts no
    weight on any available label takes what is left in proportion to the leftovers.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    left = np.asarray(label_counts, dtype=np.int64).copy()
    if sizes.sum() != left.sum():
        raise ValueError(f"client sizes sum to {sizes.sum()} but labels count {left.sum()} examples")
    need = sizes.copy()
    quotas = np.zeros(mixes.shape, dtype=np.int64)
    for _ in range(mixes.shape[1] + 1):
        if not need.any():
            return quotas
        weights = mixes * (left > 0)
        stuck = (weights.sum(axis=1) <= 0) & (need > 0)
        weights[stuck] = left
        asks = largest_remainder_rows(weights, need)
        order = rng.permutation(len(need))
        served_before = np.cumsum(asks[order], axis=0) - asks[order]
        asks[order] = np.clip(left[None, :] - served_before, 0, asks[order])
        quotas += asks
        need -= asks.sum(axis=1)
        left -= asks.sum(axis=0)
    if need.any():  # unreachable: each round above exhausts a label or finishes
        raise RuntimeError("label_quotas did not converge")
    return quotas


def assign_by_quotas(labels: np.ndarray, quotas: np.ndarray, rng: np.random.Generator) -> Positions:
    """Deal each label's examples, in random order, to the clients by the quota matrix."""
    n_clients, n_labels = quotas.shape
    perm = rng.permutation(len(labels))
    by_label = perm[np.argsort(labels[perm], kind="stable")]
    owner = np.empty(len(labels), dtype=np.int64)
    owner[by_label] = np.repeat(np.tile(np.arange(n_clients), n_labels), quotas.T.ravel())
    return split_by_owner(owner, n_clients)


def realized_mixes(quotas: np.ndarray) -> np.ndarray:
    """Each client's actual label distribution (zero rows stay zero)."""
    totals = quotas.sum(axis=1, keepdims=True)
    return np.divide(quotas, totals, out=np.zeros(quotas.shape), where=totals > 0)


def dirichlet_label_split(
    labels: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator, n_labels: int | None = None
) -> tuple[Positions, np.ndarray]:
    """FedNLP's niid_label: equal client sizes, client k's labels mixed by q_k ~ Dir(alpha * p).

    Returns the positions per client and the realized clients x labels count matrix.
    """
    counts = np.bincount(labels, minlength=n_labels or 0)
    mixes = dirichlet_mixes(counts, n_clients, alpha, rng)
    quotas = label_quotas(equal_sizes(len(labels), n_clients), mixes, counts, rng)
    return assign_by_quotas(labels, quotas, rng), quotas


def mix_label_split(
    labels: np.ndarray, sizes: np.ndarray, mixes: np.ndarray, rng: np.random.Generator
) -> tuple[Positions, np.ndarray]:
    """Split examples into clients of the given sizes whose label mixes follow `mixes`."""
    counts = np.bincount(labels, minlength=mixes.shape[1])
    quotas = label_quotas(sizes, mixes, counts, rng)
    return assign_by_quotas(labels, quotas, rng), quotas


def pathological_label_sets(
    n_labels: int, n_clients: int, labels_per_client: int, rng: np.random.Generator
) -> np.ndarray:
    """n_clients x labels_per_client distinct labels each; every label held by as many clients (within one).

    The slots k*L .. k*L+L-1 of client k are read from a sequence of fresh random label permutations
    (McMahan et al. 2017's shards, made label-exact). Where a client's slots straddle two
    permutations, the labels it already holds are moved to the back of the next permutation, so no
    client holds a label twice. Needs n_clients * labels_per_client >= n_labels for every label to
    have a holder.
    """
    per = labels_per_client
    total = n_clients * per
    sequence = np.empty(total, dtype=np.int64)
    filled = 0
    while filled < total:
        perm = rng.permutation(n_labels)
        carried = sequence[filled - filled % per : filled] if filled % per else sequence[:0]
        if len(carried):
            perm = np.concatenate([perm[~np.isin(perm, carried)], perm[np.isin(perm, carried)]])
        take = min(n_labels, total - filled)
        sequence[filled : filled + take] = perm[:take]
        filled += take
    return sequence.reshape(n_clients, per)


def pathological_split(
    labels: np.ndarray, n_clients: int, labels_per_client: int, rng: np.random.Generator, n_labels: int | None = None
) -> tuple[Positions, np.ndarray]:
    """Each client holds examples of at most `labels_per_client` labels; a label's examples are
    shared equally (within one) among its holders. Returns positions and the label sets."""
    n_labels = max(n_labels or 0, int(labels.max()) + 1 if len(labels) else 0)
    label_sets = pathological_label_sets(n_labels, n_clients, labels_per_client, rng)
    return holders_split(labels, label_sets, rng), label_sets


def holders_split(labels: np.ndarray, label_sets: np.ndarray, rng: np.random.Generator) -> Positions:
    """Share each label's examples equally (within one) among the clients whose set holds it.

    Examples of a label no client holds are left out (this happens only to test labels absent
    from the training data).
    """
    n_clients = len(label_sets)
    n_labels = max(int(label_sets.max()) + 1, int(labels.max()) + 1 if len(labels) else 0)
    holding = np.zeros((n_clients + 1, n_labels), dtype=bool)
    holding[np.arange(n_clients)[:, None], label_sets] = True
    holding[n_clients] = ~holding[:n_clients].any(axis=0)  # a last, dropped client takes the unheld
    counts = np.bincount(labels, minlength=n_labels)
    quotas = largest_remainder_rows(holding.T.astype(np.float64), counts).T
    return assign_by_quotas(labels, quotas, rng)[:n_clients]


def natural_split(values: np.ndarray, groups: np.ndarray) -> Positions:
    """One client per group: client k holds the positions whose value equals groups[k] (others: none)."""
    index = {value: k for k, value in enumerate(groups.tolist())}
    owner = np.array([index.get(v, len(groups)) for v in values.tolist()], dtype=np.int64)
    return split_by_owner(owner, len(groups) + 1)[: len(groups)]
