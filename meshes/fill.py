"""Split the pore space into SPE and void with a fill field.

A stationary Gaussian random field g (zero mean, unit variance, Gaussian covariance with
correlation length ``ell``) is sampled on a grid by filtering white noise, then a pore cell at
(x, z) is SPE where Phi(g(x, z)) < f(x, z), Phi the standard normal CDF. The expected filled
fraction at depth z is therefore exactly f(z), and the filled regions form clusters of size
about ``ell`` (PEO-rich / PEO-lean areas) instead of salt-and-pepper noise.

- Gradient membrane: f(z) = fill_min + (1 - fill_min) z / lean_zone for z < lean_zone, 1 above.
- Tape-cast cathode: f constant, equal to the SPE share of the pore space; the threshold is the
  area-weighted quantile of g over the pore cells, so the realised SPE volume matches the
  spec's wt% exactly, not only in expectation.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special
from scipy.interpolate import RegularGridInterpolator

__all__ = ["gaussian_field", "gradient_fill", "label_pore_cells"]


def gaussian_field(points_um: np.ndarray, extent_um: tuple[float, ...],
                   correlation_um: float, seed: int,
                   origin_um: tuple[float, ...] | None = None,
                   periodic_axes: tuple[int, ...] = ()) -> np.ndarray:
    """Unit-variance correlated Gaussian field evaluated at ``points_um`` (n, k), k = 2 or 3.

    The field is sampled on a grid covering ``origin_um + [0, extent_um]`` (origin 0 by
    default) and interpolated linearly. Along ``periodic_axes`` the field is periodic with
    period ``extent_um`` (the grid spacing there is rounded down to divide the extent)."""
    h = correlation_um / 4.0
    periodic = set(periodic_axes)
    # grid intervals per axis; the tolerance keeps an extent that carries a rounding error
    # (12 x 0.05 = 0.6000000000000001) on the grid of the exact one, so a voxel image and a
    # conforming mesh of one box get the same field
    cells = [max(1, math.ceil(e / h - 1e-9)) for e in extent_um]
    steps = tuple(e / n if k in periodic else h
                  for k, (e, n) in enumerate(zip(extent_um, cells, strict=True)))
    shape = tuple(n if k in periodic else n + 9 for k, n in enumerate(cells))
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    noise = rng.normal(size=shape)
    # White noise filtered with a Gaussian kernel of std ell / sqrt(2) has the Gaussian
    # covariance exp(-r^2 / ell^2); the variance is normalised to 1 with the discrete kernel.
    sigma = [correlation_um / (math.sqrt(2.0) * s) for s in steps]
    field = ndimage.gaussian_filter(noise, sigma, mode="wrap")
    delta = np.zeros(shape)
    delta[(0,) * len(shape)] = 1.0
    kernel = ndimage.gaussian_filter(delta, sigma, mode="wrap")
    field /= math.sqrt(float(np.sum(kernel**2)))
    origin = origin_um if origin_um is not None else (0.0,) * len(shape)
    pts = np.array(points_um, dtype=np.float64, copy=True)
    axes = []
    for k, (o, n, s) in enumerate(zip(origin, shape, steps, strict=True)):
        if k in periodic:
            # one more grid plane (the first one again) so the interpolation wraps
            field = np.concatenate([field, np.take(field, [0], axis=k)], axis=k)
            axes.append(o + np.arange(n + 1) * s)
            pts[:, k] = o + np.mod(pts[:, k] - o, n * s)
        else:
            axes.append(o + (np.arange(n) - 4) * s)
    interp = RegularGridInterpolator(tuple(axes), field)
    # in chunks: the interpolator's work arrays are several times the points' size
    chunk = 1 << 21
    return np.concatenate([np.asarray(interp(pts[i:i + chunk]))
                           for i in range(0, len(pts), chunk)] or [np.zeros(0)])


def gradient_fill(z_um: np.ndarray, *, lean_zone_um: float, fill_min: float) -> np.ndarray:
    """Fill fraction f(z) of the gradient membrane's pore space."""
    if lean_zone_um <= 0:
        return np.ones_like(z_um)
    return np.clip(fill_min + (1.0 - fill_min) * z_um / lean_zone_um, fill_min, 1.0)


def label_pore_cells(field: np.ndarray, fill: np.ndarray | float,
                     area_um2: np.ndarray | None = None) -> np.ndarray:
    """True where a pore cell is SPE.

    ``fill`` an array: local fill fraction per cell (SPE where Phi(g) < f).
    ``fill`` a number: global SPE share; the threshold is the area-weighted quantile.
    """
    if np.isscalar(fill):
        share = float(fill)  # type: ignore[arg-type]
        if share >= 1.0:
            return np.ones(len(field), dtype=bool)
        if share <= 0.0:
            return np.zeros(len(field), dtype=bool)
        w = np.ones(len(field)) if area_um2 is None else area_um2
        order = np.argsort(field)
        cum = np.cumsum(w[order]) / np.sum(w)
        spe = np.zeros(len(field), dtype=bool)
        spe[order[: int(np.searchsorted(cum, share)) + 1]] = True
        return spe
    return np.asarray(special.ndtr(field) < fill)
