"""The seeds of a run's random streams, from `cfg.seed` and the rank, in one place.

Every rank draws its own latent noise; the engine, its checkpoint restore and the distributed
adapters all take the seeds from here, so a resumed or rescaled run draws the same streams.
"""

from __future__ import annotations

_RANKS_PER_SEED = 1000
_POOL_OFFSET = 7919  # keeps the pool's stream apart from every rank's noise stream of the same seed


def noise_seed(seed: int, rank: int) -> int:
    """The latent-noise generator of one rank."""
    return seed * _RANKS_PER_SEED + rank


def pool_seed(seed: int, rank: int) -> int:
    """The frozen generator's sample pool: its own stream, so a resumed run rebuilds the same pool."""
    return noise_seed(seed, rank) + _POOL_OFFSET


def joining_rank_noise_seed(seed: int, rank: int, iteration: int) -> int:
    """Noise for a rank that a resumed run has and its checkpoint had not (more workers than before)."""
    return noise_seed(seed, rank) + _POOL_OFFSET * iteration


__all__ = ["noise_seed", "pool_seed", "joining_rank_noise_seed"]
