"""The seeds of a run's random streams, from `cfg.seed` and the rank, in one place.

Every rank draws its own latent noise; the engine, its checkpoint restore and the distributed
adapters all take the seeds from here, so a resumed or rescaled run draws the same streams.
"""

from __future__ import annotations

_RANKS_PER_SEED = 1000
_POOL_OFFSET = 7919  # keeps the pool's stream apart from every rank's noise stream of the same seed
_HELD_OUT_OFFSET = 104_729  # the health check's noise and later generators' weights: never a training stream


def noise_seed(seed: int, rank: int) -> int:
    """The latent-noise generator of one rank."""
    return seed * _RANKS_PER_SEED + rank


def pool_seed(seed: int, rank: int) -> int:
    """The frozen generator's sample pool: its own stream, so a resumed run rebuilds the same pool."""
    return noise_seed(seed, rank) + _POOL_OFFSET


def joining_rank_noise_seed(seed: int, rank: int, iteration: int) -> int:
    """Noise for a rank that a resumed run has and its checkpoint had not (more workers than before)."""
    return noise_seed(seed, rank) + _POOL_OFFSET * iteration


def health_noise_seed(seed: int, rank: int) -> int:
    """Held-out noise for the health check (`engine/health.py`), so its numbers do not reuse training latents."""
    return noise_seed(seed, rank) + _HELD_OUT_OFFSET


def later_generator_seed(seed: int, index: int) -> int:
    """Initial weights of stage 1's generator number `index` (>= 1) with `generators > 1`: the same on every rank."""
    return seed * _RANKS_PER_SEED + _HELD_OUT_OFFSET * index


__all__ = ["noise_seed", "pool_seed", "joining_rank_noise_seed", "health_noise_seed", "later_generator_seed"]
