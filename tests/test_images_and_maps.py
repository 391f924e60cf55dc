"""Image decoding details and the projection engine, called as plain functions (no Dagster)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pixel_detective_dagster.media.imaging import ImageError, decode_rgb, make_thumbnail, probe
from pixel_detective_dagster.projection import cluster_points, embed_2d
from pixel_detective_dagster.samples.images import photo, variant


def jpeg(img: Image.Image, exif: Image.Exif | None = None) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90, exif=exif.tobytes() if exif else b"")
    return buffer.getvalue()


def test_exif_orientation_makes_thumbnail_upright_and_is_recorded() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    exif[0x010F] = "Canon"
    data = jpeg(Image.new("RGB", (400, 200), (200, 30, 30)), exif)
    info = probe(data)
    assert (info.width, info.height) == (400, 200)
    assert info.exif["orientation"] == 6 and info.exif["camera_make"] == "Canon"
    thumb = make_thumbnail(data, 256)
    assert thumb.size == (128, 256)  # upright: portrait


def test_12mp_jpeg_is_decoded_at_reduced_scale() -> None:
    data = jpeg(variant(photo("chelsea.png"), 1, (4000, 3000)))
    img = decode_rgb(data, 224)
    assert img.mode == "RGB"
    assert 224 <= min(img.size) < 3000 // 4  # draft scale, never the full 12 MP


def test_decompression_bomb_refused_before_decoding() -> None:
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")
    with pytest.raises(ImageError, match="too many pixels"):
        probe(buffer.getvalue(), max_pixels=100_000_000)


def test_umap_and_clusters_separate_clustered_embeddings() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64))
    vectors = np.concatenate([c + 0.05 * rng.normal(size=(30, 64)) for c in centres]).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    truth = np.repeat(np.arange(3), 30)
    result = embed_2d(vectors, "cpu")
    assert result.method == "pca50+umap" and result.coords.shape == (90, 2)
    assert np.isfinite(result.coords).all()
    clusters = cluster_points(result.coords, vectors, "cpu")
    # no cluster of either kind mixes two true groups, and most points are not noise
    for labels in (clusters.kmeans, clusters.density):
        for label in set(labels.tolist()) - {-1}:
            assert len(set(truth[labels == label].tolist())) == 1
    assert (clusters.density != -1).mean() > 0.8
    assert clusters.n_kmeans == len(set(clusters.kmeans.tolist()))
