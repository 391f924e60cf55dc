"""PCA in numpy, for the default engine: scikit-learn's ``PCA`` takes 1.6 s to import, longer than a
1,000-point map takes to fit. The components are the covariance's leading eigenvectors, as scikit-learn's
``covariance_eigh`` solver finds them (its choice when rows far outnumber dimensions, as embeddings do)."""

from __future__ import annotations

import numpy as np


class CovariancePCA:
    """``fit`` / ``transform`` with ``mean_``, ``components_`` and ``explained_variance_ratio_`` as in scikit-learn."""

    def __init__(self, n_components: int):
        self.n_components = n_components

    def fit(self, x: np.ndarray) -> CovariancePCA:
        self.mean_ = x.mean(axis=0)
        centred = (x - self.mean_).astype(np.float64)
        values, vectors = np.linalg.eigh(centred.T @ centred)  # ascending
        values, vectors = values[::-1], vectors[:, ::-1]
        components = vectors[:, : self.n_components].T
        components *= np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])[:, None]
        self.components_ = components.astype(x.dtype)
        self.explained_variance_ratio_ = np.clip(values[: self.n_components], 0, None) / max(values.sum(), 1e-12)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) @ self.components_.T
