"""Cluster names from the caption words that set each cluster apart from the rest of the collection.

A word scores ``p(word | cluster) * log(p(word | cluster) / p(word | rest))``: its share of the
cluster's caption words times how much more often the cluster uses it than all other captions do
(class-based TF-IDF in its "against the rest" form: the word's term of the KL divergence between
cluster and rest). Words every cluster uses score about zero however frequent they are, so captions
that share most of their words are still named by the words they do not share.
"""

from __future__ import annotations

import numpy as np

NOISE_NAME = "unclustered"
# words BLIP puts in many captions that say nothing about the content
CAPTION_FILLER = frozenset({"arafed", "araffe", "arafly", "image", "picture", "photo", "photograph", "view", "close"})
SMOOTHING = 0.5  # added to every word count of the rest, so a word the rest never uses has a finite ratio
MIN_LIFT = 2.0  # a name word is at least this many times more frequent in its cluster than in the rest


def cluster_names(labels: np.ndarray, captions: list[str | None], words: int = 3) -> dict[int, str]:
    """Name each cluster label by its ``words`` most distinctive caption terms; names never repeat.

    Noise (-1) is named ``NOISE_NAME`` but its captions count as "rest" for the others. A cluster with
    no distinctive word is "cluster N"; one whose name another cluster already has gets `` #N`` appended.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer  # lazy: 1.6 s, not to place points

    classes = sorted(set(labels.tolist()))
    names = {label: NOISE_NAME if label == -1 else "" for label in classes}
    docs = [" ".join(c for c, label in zip(captions, labels.tolist()) if label == cls and c) for cls in classes]
    vectorizer = CountVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | CAPTION_FILLER), token_pattern=r"(?u)\b[a-z]{2,}\b"
    )
    try:
        counts = vectorizer.fit_transform(docs).toarray().astype(np.float64)
    except ValueError:  # no caption words at all
        counts = np.zeros((len(classes), 0))
    terms = vectorizer.get_feature_names_out() if counts.shape[1] else np.array([], str)
    scores = distinctiveness(counts)
    seen: set[str] = set()
    for row, label in enumerate(classes):
        if label == -1:
            continue
        order = sorted(np.flatnonzero(scores[row] > 0), key=lambda t: (-scores[row, t], terms[t]))
        name = ", ".join(terms[t] for t in order[:words])
        names[label] = f"cluster {label}" if not name else f"{name} #{label}" if name in seen else name
        seen.add(names[label])
    return names


def distinctiveness(counts: np.ndarray) -> np.ndarray:
    """Per class (row) and word (column): ``p(w | class) * log(p(w | class) / p(w | other classes))``,
    zero where the word is less than ``MIN_LIFT`` times more frequent in the class than in the others."""
    if not counts.size:
        return counts
    inside = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    rest = counts.sum(axis=0, keepdims=True) - counts + SMOOTHING
    lift = inside / (rest / rest.sum(axis=1, keepdims=True))
    return np.where(lift >= MIN_LIFT, inside * np.log(np.maximum(lift, 1.0)), 0.0)
