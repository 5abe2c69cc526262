"""Product-of-marginals pairs from a random derangement of the batch: ``(x_i, y_σ(i))`` with ``σ(i) ≠ i``.

Re-pairing ``y`` by a random *permutation* leaves about one fixed point per batch (``E = 1`` for every ``n``), and
each fixed point is a joint pair labelled as a marginal one; a *derangement* (a permutation without fixed points) has
none. Letizia, Novello & Tonello ("Mutual Information Estimation via f-Divergence and Data Derangements", NeurIPS
2024; arXiv:2305.20025, first titled "Variational f-Divergence and Derangements for Discriminative Mutual Information
Estimation", 2023) study the permutation that builds the marginal training pairs and train their f-DIME estimators on
a derangement, because the fixed points of a permutation bias the discriminator.

:func:`random_derangement` draws ``σ`` uniformly among the derangements of ``n`` by rejection: a uniform permutation
(``torch.randperm``) conditioned on having no fixed point is uniform on the derangements, and is accepted with
probability ``D_n / n! >= 1/3`` (``→ 1/e``), so fewer than 3 draws on average. It runs on the CPU with a CPU
``torch.Generator``, so drawing it never waits on an accelerator. :func:`with_derangement_pairs` adds the pairs to an
MI batch as the explicit ``x_marginal`` / ``y_marginal`` of the batch contract (:mod:`.batch`), which every bound
then reads as one marginal pair per row (:meth:`~pdlightning.bounds.PairScores.from_pairs`).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch
from torch import Tensor

__all__ = ["random_derangement", "with_derangement_pairs"]

#: Rejection draws before giving up: each is accepted with probability >= 1/3, so failing is a 1e-176 event.
_MAX_DRAWS = 1000


def random_derangement(n: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """A uniformly random derangement ``σ`` of ``{0, ..., n-1}`` (``σ[i] ≠ i`` for every ``i``): ``[n]`` int64 on
    the CPU.

    Args:
        n: the batch size, at least 2 (a batch of one pair has no derangement).
        generator: a CPU ``torch.Generator`` (None: torch's global CPU RNG).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(
            f"n (the batch size) must be an integer >= 2 for a derangement (a batch of 1 pair has no marginal pair "
            f"with another y), got {n!r}"
        )
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(
            f"generator: expected a CPU torch.Generator (the derangement is drawn on the CPU, without a device "
            f"sync), got one on {generator.device}"
        )
    identity = torch.arange(n)
    for _ in range(_MAX_DRAWS):
        sigma = torch.randperm(n, generator=generator)
        if not bool((sigma == identity).any()):
            return sigma
    raise RuntimeError(f"no derangement of {n} in {_MAX_DRAWS} uniform permutations: the generator is broken")


def with_derangement_pairs(
    batch: Mapping[str, Any], generator: Optional[torch.Generator] = None, pair_dim: int = 0
) -> dict[str, Any]:
    """A copy of an MI batch with one product-of-marginals pair per row: ``x_marginal = x`` and
    ``y_marginal[i] = y[σ(i)]`` for a fresh uniform derangement ``σ`` (:func:`random_derangement`).

    Args:
        batch: a batch of the contract of :mod:`.batch` (``x``, ``y``, ...) without explicit marginal pairs.
        generator: the CPU generator the derangement is drawn from (None: torch's global CPU RNG).
        pair_dim: the dimension of ``x`` and ``y`` that indexes the pairs (1 for stacked replicate batches
            ``[K, n, ...]``, which then share one derangement).
    """
    for key in ("x", "y"):
        if key not in batch or not isinstance(batch[key], Tensor):
            raise ValueError(f"batch: expected a tensor under {key!r}; found keys {sorted(batch)}")
    if "x_marginal" in batch or "y_marginal" in batch:
        raise ValueError(
            "batch: already carries explicit marginal pairs ('x_marginal' / 'y_marginal'); derangement pairs would "
            "replace the task's own"
        )
    x, y = batch["x"], batch["y"]
    if not (-x.dim() <= pair_dim < x.dim()) or x.shape[pair_dim] != y.shape[pair_dim]:
        raise ValueError(
            f"pair_dim: expected a dimension along which x {tuple(x.shape)} and y {tuple(y.shape)} hold the same "
            f"number of pairs, got {pair_dim}"
        )
    sigma = random_derangement(int(y.shape[pair_dim]), generator)
    y_marginal = y.index_select(pair_dim, sigma.to(y.device, non_blocking=True))
    return {**batch, "x_marginal": x, "y_marginal": y_marginal}
