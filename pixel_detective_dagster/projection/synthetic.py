"""Clustered, CLIP-like unit vectors for tests and benchmarks (uneven topics, a decaying spectrum, a shared mean)."""

from __future__ import annotations

import numpy as np


def clustered_vectors(n: int, dim: int = 512, clusters: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in ``clusters`` groups of Zipf-like sizes, and their group labels.

    Structure lives in a 64-dimensional subspace whose axes have power-law scales, as in real
    embeddings; each point is its group's centre plus a smaller spread in the same subspace plus
    a little isotropic noise, all around a common mean direction (the "cone" of CLIP embeddings).
    """
    rng = np.random.default_rng(seed)
    rank = min(64, dim)
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].T  # (rank, dim), orthonormal rows
    scales = np.arange(1, rank + 1) ** -0.8
    sizes = 1.0 / np.arange(1, clusters + 1) ** 0.7
    labels = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    centres = rng.normal(size=(clusters, rank)) * scales
    local = rng.normal(size=(n, rank)) * scales * 0.35
    mean = rng.normal(size=dim)
    vectors = (centres[labels] + local) @ basis + 0.02 * rng.normal(size=(n, dim)) + 0.15 * mean / np.linalg.norm(mean)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), labels
