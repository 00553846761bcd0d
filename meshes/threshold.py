"""Percolation thresholds from per-sample crossing counts (shared by sticks and rods).

Objects are added to a sample one at a time; ``k`` is the number at which a spanning (or
wrapping) cluster first appears. For a Poisson number of objects with mean ``density x
measure`` the crossing probability is P(density) = mean_k Pr[Poisson >= k], exactly. The
threshold is the density where P = 1/2; its standard error comes from a bootstrap over
samples, evaluated on a fine density grid with the distinct counts only (bounded memory).
"""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import brentq
from scipy.special import pdtrc

__all__ = ["PoissonThreshold", "crossing", "parallel_map", "poisson_threshold", "seed_chunks"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PoissonThreshold:
    density: float  # where P = 1/2, per unit of ``measure``
    std_error: float  # bootstrap over samples
    grid: FloatArray  # densities of the tabulated curve
    probabilities: FloatArray  # P on the grid
    probability_std: FloatArray  # bootstrap std of P on the grid


def crossing(x: FloatArray, y: FloatArray, level: float = 0.5) -> float:
    """x where the non-decreasing sampled curve y(x) first reaches ``level`` (linear interp)."""
    i = int(np.searchsorted(y, level))
    if i == 0:
        return float(x[0])
    if i >= y.size:
        return float(x[-1])
    y0, y1 = y[i - 1], y[i]
    t = 0.0 if y1 == y0 else (level - y0) / (y1 - y0)
    return float(x[i - 1] + t * (x[i] - x[i - 1]))


def poisson_threshold(counts: npt.ArrayLike, measure: float, *, n_bootstrap: int,
                      seed: int | np.random.SeedSequence, grid_points: int = 801
                      ) -> PoissonThreshold:
    """Threshold density from ``counts`` (n_samples, n_directions): per sample and pooled
    direction, the object count at first crossing; ``measure`` is the placement area or
    volume, so that density = count / measure."""
    kc = np.asarray(counts, dtype=np.int64)
    n_samples, n_per = kc.shape

    def prob(n: float | FloatArray) -> FloatArray:
        lam = np.asarray(n, dtype=np.float64)[..., None] * measure
        return np.asarray(pdtrc(kc.ravel() - 1, lam).mean(axis=-1))

    n_all = kc.ravel() / measure
    density = float(brentq(lambda x: float(prob(x)) - 0.5, 0.5 * float(n_all.min()),
                           1.5 * float(n_all.max()), xtol=1e-12 * float(n_all.mean())))
    q_lo, q_hi = np.quantile(n_all, [0.002, 0.998])
    span = max(float(q_hi - q_lo), 1e-9 * float(n_all.mean()))
    grid = np.linspace(float(q_lo) - 0.1 * span, float(q_hi) + 0.1 * span, grid_points)
    uniq, inv = np.unique(kc, return_inverse=True)
    inv = inv.reshape(kc.shape)
    sf = pdtrc(uniq[:, None] - 1, grid[None, :] * measure)  # (U, G)
    rng = np.random.default_rng(seed)
    boot_p = np.empty((n_bootstrap, grid.size))
    step = max(1, 2_000_000 // (n_samples * n_per))  # bounded memory per chunk
    for first in range(0, n_bootstrap, step):
        nb = min(step, n_bootstrap - first)
        idx = rng.integers(0, n_samples, size=(nb, n_samples))
        flat = (np.arange(nb)[:, None, None] * uniq.size + inv[idx]).ravel()
        weights = np.bincount(flat, minlength=nb * uniq.size).reshape(nb, uniq.size)
        boot_p[first:first + nb] = weights @ sf / (n_samples * n_per)
    boot = np.array([crossing(grid, row) for row in boot_p])
    return PoissonThreshold(density=density, std_error=float(np.std(boot, ddof=1)), grid=grid,
                            probabilities=prob(grid), probability_std=boot_p.std(axis=0, ddof=1))


def parallel_map[T](fn: Callable[..., T], args: Sequence[tuple[Any, ...]], workers: int) -> list[T]:
    """Apply fn to argument tuples, optionally in worker processes (results in order).

    Workers are started with the ``spawn`` method (no fork of a possibly multi-threaded
    process), so a script that passes ``workers > 1`` must guard its entry point with
    ``if __name__ == "__main__":``.
    """
    if workers <= 1 or len(args) < 2:
        return [fn(*a) for a in args]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(fn, *zip(*args, strict=True)))


def seed_chunks(
    seqs: list[np.random.SeedSequence], workers: int
) -> list[list[np.random.SeedSequence]]:
    """Split per-sample seed sequences into about 4 chunks per worker (one chunk serially)."""
    k = min(len(seqs), 4 * workers) if workers > 1 else 1
    bounds = np.linspace(0, len(seqs), k + 1).round().astype(int)
    return [seqs[a:b] for a, b in itertools.pairwise(bounds) if b > a]
