"""Cluster names from their most characteristic caption words (class-based TF-IDF, as in BERTopic)."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

NOISE_NAME = "unclustered"
# words BLIP puts in many captions that say nothing about the content
CAPTION_FILLER = frozenset({"arafed", "araffe", "arafly", "image", "picture", "photo", "photograph", "view", "close"})


def cluster_names(labels: np.ndarray, captions: list[str | None], words: int = 3) -> dict[int, str]:
    """Name each cluster label by the ``words`` terms most frequent in its captions relative to all captions.

    Every label, noise (-1) included, is one "document" of its captions; a term scores
    ``tf(term, cluster) * log(1 + mean words per cluster / frequency of term overall)``.
    """
    classes = sorted(set(labels.tolist()))
    names = {label: NOISE_NAME if label == -1 else "" for label in classes}
    docs = [" ".join(c for c, label in zip(captions, labels.tolist()) if label == cls and c) for cls in classes]
    vectorizer = CountVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | CAPTION_FILLER), token_pattern=r"(?u)\b[a-z]{2,}\b"
    )
    try:
        counts = vectorizer.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # no caption words at all
        return names
    terms = vectorizer.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log1p(counts.sum() / len(classes) / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    for row, label in enumerate(classes):
        if label == -1:
            continue
        order = sorted(np.flatnonzero(scores[row] > 0), key=lambda t: (-scores[row, t], terms[t]))
        names[label] = ", ".join(terms[t] for t in order[:words])
    return names
