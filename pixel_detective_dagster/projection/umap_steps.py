"""UMAP's fit and placement, written once over numpy arrays and torch tensors.

The steps follow umap-learn (McInnes et al.): each point's ``k`` nearest neighbours (exact, by matrix
products), memberships ``exp(-(d - rho) / sigma)`` with ``sigma`` found by bisection so that they sum to
``log2(k + 1)``, their fuzzy union, a start on the first two principal axes, then attraction along
sampled edges and repulsion from negative samples with the curve ``1 / (1 + a d^2b)``.
Unlike umap-learn's one-edge-at-a-time loop, every edge due in an epoch is applied at once (as cuML does on
a GPU). ``array_api_compat`` gives both array libraries one namespace (numpy 2 is one itself); the three
operations the array API lacks (k smallest, weighted counts, random integers) are below. Nothing here
imports torch, and nothing is compiled at run time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_torch_array

NEGATIVE_SAMPLE_RATE = 5
REPULSION = 1.0  # umap-learn's gamma
CLIP = 4.0
BISECTION_STEPS = 64
KNN_BLOCK = 1 << 25  # distance-matrix entries per block (128 MiB of float32)

NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
Array = Any  # a numpy array or a torch tensor
Draw = Callable[[int, int], Array]  # (high, count) -> ``count`` random integers in [0, high), on the arrays' device


def namespace(*arrays: Array) -> Any:
    """The arrays' array-API namespace; numpy 2 is its own, skipping a compat wrapper that takes 0.12 s to import."""
    if NUMPY_2 and all(isinstance(a, np.ndarray) for a in arrays):
        return np
    return array_namespace(*arrays)


def curve_parameters(min_dist: float, spread: float = 1.0) -> tuple[float, float]:
    """umap-learn's ``a, b``: the curve ``1 / (1 + a x^2b)`` fitted to 1 below ``min_dist``, a decay beyond."""
    from scipy.optimize import curve_fit  # lazy: 0.45 s to import; a fitted model keeps its a, b

    x = np.linspace(0, spread * 3, 300)
    y = np.where(x < min_dist, 1.0, np.exp(-(x - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), x, y)
    return float(a), float(b)


def numpy_draw(seed: int | None) -> Draw:
    rng = np.random.default_rng(seed)
    return lambda high, count: rng.integers(0, high, count)


def smallest(x: Array, k: int) -> tuple[Array, Array]:
    """Values and column indices of the ``k`` smallest entries of each row, in no particular order."""
    if is_torch_array(x):
        return x.topk(k, dim=1, largest=False)
    index = np.argpartition(x, k - 1, axis=1)[:, :k]
    return np.take_along_axis(x, index, 1), index


def weighted_counts(index: Array, weights: Array, n: int) -> Array:
    """``out[i]`` = the sum of ``weights`` where ``index`` is ``i``, for ``i < n`` (a weighted ``bincount``)."""
    if is_torch_array(index):
        return index.bincount(weights, minlength=n)
    return np.bincount(index, weights, minlength=n)


def scatter_add(target: Array, index: Array, values: Array) -> Array:
    """``target[index[r]] += values[r]`` for every row ``r``, repeated indices adding up; in place."""
    if is_torch_array(target):
        return target.index_add_(0, index, values)
    for column in range(target.shape[1]):  # many times faster than np.add.at
        target[:, column] += weighted_counts(index, values[:, column], target.shape[0])
    return target


def nearest(queries: Array, points: Array, k: int, skip_self: bool) -> tuple[Array, Array]:
    """Indices and euclidean distances of each query's ``k`` nearest points, in blocks of rows.

    With ``skip_self`` the queries are the points and a point is not its own neighbour.
    """
    xp = namespace(queries, points)
    squared = xp.sum(points * points, axis=1)
    rows = max(1, KNN_BLOCK // max(points.shape[0], 1))
    indices, distances = [], []
    for start in range(0, queries.shape[0], rows):
        block = queries[start : start + rows]
        partial = block @ points.T  # d^2 less the query's own norm, built in place
        partial *= -2
        partial += squared[None, :]
        if skip_self:
            own = xp.arange(block.shape[0], device=device(block))
            partial[own, own + start] = math.inf
        values, index = smallest(partial, k)
        indices.append(index)
        distances.append(xp.sqrt(xp.clip(values + xp.sum(block * block, axis=1, keepdims=True), 0.0, None)))
    return xp.concat(indices), xp.concat(distances)


def memberships(distances: Array, local_connectivity: bool) -> Array:
    """Fuzzy membership of each neighbour, ``exp(-(d - rho) / sigma)``, summing to ``log2(k + 1)`` per row.

    ``rho`` is the distance to the nearest distinct neighbour when ``local_connectivity`` (fitting), else 0
    (placing new points, as umap-learn's transform does).
    """
    xp = namespace(distances)
    target = math.log2(distances.shape[1] + 1)
    rho = xp.min(xp.where(distances > 0, distances, math.inf), axis=1, keepdims=True)
    zero = xp.zeros_like(rho)
    rho = xp.where(xp.isfinite(rho), rho, zero) if local_connectivity else zero
    excess = xp.clip(distances - rho, 0.0, None)
    low, high = zero, xp.full_like(rho, math.inf)
    sigma = xp.ones_like(rho)
    for _ in range(BISECTION_STEPS):
        above = xp.sum(xp.exp(-excess / sigma), axis=1, keepdims=True) > target
        high = xp.where(above, sigma, high)
        low = xp.where(above, low, sigma)
        sigma = xp.where(xp.isfinite(high), (low + high) / 2, sigma * 2)
    if local_connectivity:
        sigma = xp.maximum(sigma, 1e-3 * xp.mean(distances, axis=1, keepdims=True))  # umap-learn's MIN_K_DIST_SCALE
    return xp.exp(-excess / xp.clip(sigma, 1e-12, None))


def fuzzy_union(indices: Array, weights: Array) -> tuple[Array, Array, Array]:
    """Edges (head, tail, weight) of ``P + P^T - P * P^T`` for the directed k-NN memberships ``P``."""
    xp = namespace(indices, weights)
    n, k = indices.shape
    heads = xp.repeat(xp.arange(n, device=device(indices)), k)
    tails, w = xp.reshape(indices, (-1,)), xp.reshape(weights, (-1,))
    keys = xp.concat([heads * n + tails, tails * n + heads])
    both = xp.concat([w, w])
    unique, inverse = xp.unique_inverse(keys)
    total = weighted_counts(inverse, both, unique.shape[0])
    # an edge has one membership or two (i lists j, j lists i); the product of two is ((a+b)^2 - a^2 - b^2) / 2
    product = (total * total - weighted_counts(inverse, both * both, unique.shape[0])) / 2
    return unique // n, unique % n, xp.astype(total - product, w.dtype)


def pca_layout(x: Array) -> Array:
    """Start from the first two principal axes, scaled to [0, 10] as umap-learn scales its initial layout."""
    xp = namespace(x)
    centred = x - xp.mean(x, axis=0)
    _, _, v = xp.linalg.svd(centred[:: max(1, x.shape[0] // 20_000)], full_matrices=False)
    y = centred @ v[:2].T
    low = xp.min(y, axis=0)
    return 10 * (y - low) / xp.clip(xp.max(y, axis=0) - low, 1e-12, None)


class Layout:
    """The SGD of umap-learn's ``optimize_layout_euclidean``, one batch of due edges per epoch."""

    def __init__(self, a: float, b: float, draw: Draw):
        self.a, self.b, self.draw = a, b, draw

    def run(
        self,
        head: Array,  # (h, 2) moving coordinates
        tail: Array,  # (t, 2) coordinates pulled on (the same array as head when fitting)
        edges: tuple[Array, Array, Array],
        n_epochs: int,
        initial_alpha: float,
        move_tail: bool,
    ) -> Array:
        xp = namespace(head)
        heads, tails, weights = edges
        keep = weights >= xp.max(weights) / n_epochs
        heads, tails, weights = heads[keep], tails[keep], weights[keep]
        period = xp.max(weights) / weights  # epochs between two samples of an edge
        due_at = xp.asarray(period, copy=True)
        for epoch in range(n_epochs):
            alpha = initial_alpha * (1 - epoch / n_epochs)
            due = due_at <= epoch + 1
            due_at[due] += period[due]
            i, j = heads[due], tails[due]
            near = i.shape[0]
            i = xp.concat([i, xp.repeat(i, NEGATIVE_SAMPLE_RATE)])
            j = xp.concat([j, self.draw(tail.shape[0], near * NEGATIVE_SAMPLE_RATE)])
            step = self._gradient(xp, head[i] - tail[j], near) * alpha
            moves = scatter_add(xp.zeros_like(head), i, step)
            if move_tail:
                scatter_add(moves, j[:near], -step[:near])
            head += moves
        return head

    def _gradient(self, xp: Any, diff: Array, near: int) -> Array:
        """Attraction for the first ``near`` pairs, repulsion for the rest, each clipped as umap-learn does.

        A pair at distance 0 (a point drawn as its own negative sample) gets no push.
        """
        d2 = xp.sum(diff * diff, axis=1, keepdims=True)
        power = d2**self.b
        inverse = 1 / (1 + self.a * power)
        coeff = xp.empty_like(d2)
        coeff[:near] = -2 * self.a * self.b * power[:near] / xp.clip(d2[:near], 1e-12, None) * inverse[:near]
        coeff[near:] = 2 * REPULSION * self.b * inverse[near:] / (1e-3 + d2[near:])
        return xp.clip(coeff * diff, -CLIP, CLIP)


def fit(
    points: Array, k: int, epochs: int, curve: tuple[float, float], start: Array | None = None, *, draw: Draw
) -> Array:
    """2-D coordinates of ``points`` from their ``k``-NN graph, starting on the principal axes unless given ``start``."""
    indices, distances = nearest(points, points, k, skip_self=True)
    edges = fuzzy_union(indices, memberships(distances, local_connectivity=True))
    start = pca_layout(points) if start is None else start
    return Layout(*curve, draw).run(start, start, edges, epochs, 1.0, move_tail=True)


def place(
    queries: Array, fitted: Array, reference: Array, k: int, epochs: int, curve: tuple[float, float], *, draw: Draw
) -> Array:
    """Coordinates for ``queries`` among the ``fitted`` points (whose coordinates ``reference`` stay fixed),
    as umap-learn's ``transform``: a start weighted by the queries' neighbours, then SGD toward them."""
    xp = namespace(queries, fitted, reference)
    indices, distances = nearest(queries, fitted, min(k, fitted.shape[0]), skip_self=False)
    weights = memberships(distances, local_connectivity=False)
    total = xp.clip(xp.sum(weights, axis=1, keepdims=True), 1e-12, None)
    start = xp.sum(reference[indices] * weights[..., None], axis=1) / total
    heads = xp.repeat(xp.arange(queries.shape[0], device=device(queries)), indices.shape[1])
    edges = (heads, xp.reshape(indices, (-1,)), xp.reshape(weights, (-1,)))
    return Layout(*curve, draw).run(start, reference, edges, epochs, 0.25, move_tail=False)
