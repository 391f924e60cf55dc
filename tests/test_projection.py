"""Maps of a collection: engine interface and selection, incremental placement, refits, quality, cluster names."""

from __future__ import annotations

import pickle
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from dagster import DagsterInstance, build_resources, materialize

from pixel_detective_dagster.defs.resources import resources_from_env
from pixel_detective_dagster.index.vector_index import IndexPoint, point_id
from pixel_detective_dagster.projection import (
    EngineUnavailableError,
    ModelStore,
    ProjectionSettings,
    Reducer,
    choose_engine,
    cluster_names,
    cuml_status,
    make_engine,
    map_trustworthiness,
    plan_update,
    update_map,
)
from pixel_detective_dagster.projection.incremental import SavedModel
from pixel_detective_dagster.projection.labels import label_map
from pixel_detective_dagster.projection.linear import CovariancePCA
from pixel_detective_dagster.projection.on_torch import run_on
from pixel_detective_dagster.projection.quality import trustworthiness
from pixel_detective_dagster.projection.synthetic import clustered_vectors
from pixel_detective_dagster.projection.torch_engine import TorchEngine
from pixel_detective_dagster.projection.torch_umap import TorchUMAP
from pixel_detective_dagster.projection.umap_steps import fuzzy_union, memberships, place
from pixel_detective_dagster.storage.layout import PARTITIONS_NAME, DataLayout

SETTINGS = ProjectionSettings(seed=0)
ENGINES_HERE = ["torch", "umap-learn"] + (["cuml"] if cuml_status()[0] else [])


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered_vectors(360, dim=96, clusters=5, seed=1)


def ids_of(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


# --- the engine interface ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINES_HERE)
def test_engine_contract(name: str, data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors, truth = data[0][:200], data[1][:200]
    engine = make_engine(name)
    reducer, coords = engine.fit(vectors, SETTINGS)
    assert coords.shape == (200, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert reducer.engine == name and reducer.dim == 96 and reducer.method == "pca50+umap"
    assert reducer.pca_recall is not None and reducer.pca_recall >= SETTINGS.min_pca_recall
    placed = engine.transform(reducer, vectors[:30], ProjectionSettings(transform_chunk=7))  # several chunks
    assert placed.shape == (30, 2) and np.isfinite(placed).all()
    clusters = engine.cluster(coords, vectors, SETTINGS)
    assert len(clusters.density) == len(clusters.membership) == len(clusters.kmeans) == 200
    for label in set(clusters.density.tolist()) - {-1}:  # no density cluster mixes two true groups
        assert len(set(truth[clusters.density == label].tolist())) == 1
    with pytest.raises(ValueError, match="cannot be used"):
        engine.transform(Reducer("other", 96, "umap"), vectors[:3], SETTINGS)


def test_too_few_points_get_principal_axes_that_transform() -> None:
    vectors = clustered_vectors(5, dim=16, clusters=2)[0]
    engine = TorchEngine()
    reducer, coords = engine.fit(vectors, SETTINGS)
    assert reducer.method == "pca" and coords.shape == (5, 2)
    np.testing.assert_allclose(engine.transform(reducer, vectors, SETTINGS), coords, atol=1e-5)
    assert engine.cluster(coords, vectors, SETTINGS).n_kmeans == 1


# --- UMAP in torch ---------------------------------------------------------------------------------------------


def test_memberships_and_their_fuzzy_union_follow_umap() -> None:
    weights = memberships(torch.tensor([[1.0, 2.0, 4.0], [0.5, 0.5, 3.0]]), local_connectivity=True)
    assert weights[:, 0].tolist() == [1.0, 1.0]  # the nearest neighbour is fully connected
    np.testing.assert_allclose(weights.sum(1).numpy(), [2.0, 2.0], atol=1e-4)  # log2(k + 1), k = 3
    heads, tails, union = fuzzy_union(torch.tensor([[1], [0], [0]]), torch.tensor([[0.5], [1.0], [0.25]]))
    edges = {(int(h), int(t)): float(w) for h, t, w in zip(heads, tails, union)}
    assert edges == {(0, 1): 1.0, (1, 0): 1.0, (0, 2): 0.25, (2, 0): 0.25}  # P + P^T - P * P^T


def test_torch_umap_is_seeded_and_places_new_points_without_moving_the_fit(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    vectors, truth = data
    model = TorchUMAP(random_state=3, n_epochs=100, device="cpu")
    fitted = model.fit_transform(vectors[:300]).copy()
    again = TorchUMAP(random_state=3, n_epochs=100, device="cpu").fit_transform(vectors[:300])
    np.testing.assert_array_equal(again, fitted)
    placed = model.transform(vectors[300:])
    np.testing.assert_array_equal(model.embedding, fitted)
    nearest = np.linalg.norm(placed[:, None] - fitted[None], axis=2).argmin(axis=1)
    assert (truth[nearest] == truth[300:]).mean() > 0.9
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(model)).transform(vectors[300:]), placed)


def test_numpy_and_torch_place_new_points_alike(data: tuple[np.ndarray, np.ndarray]) -> None:
    """One placement over two array libraries: numpy on the CPU, torch where a batch pays for a GPU."""
    vectors, truth = data
    model = TorchUMAP(random_state=3, n_epochs=100, device="cpu")
    fitted = model.fit_transform(vectors[:300])
    arrays = (vectors[300:].astype(np.float32), model.data, model.embedding)
    by_numpy = model.transform(vectors[300:])
    by_torch = run_on("cpu", place, *arrays, model.n_neighbors, 33, model.curve, seed=4)
    span = np.ptp(fitted, axis=0).max()
    for placed in (by_numpy, by_torch):
        nearest = np.linalg.norm(placed[:, None] - fitted[None], axis=2).argmin(axis=1)
        assert (truth[nearest] == truth[300:]).mean() > 0.9
    assert np.median(np.linalg.norm(by_numpy - by_torch, axis=1)) < 0.05 * span


def test_a_fresh_process_places_a_batch_without_torch_or_scikit_learn(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors = data[0]
    store = ModelStore(tmp_path / "model.joblib")
    first = update_map(ids_of(300), vectors[:300], None, store, TorchEngine(), SETTINGS)
    np.save(tmp_path / "vectors.npy", vectors)
    first.frame().to_parquet(tmp_path / "map.parquet")
    code = (
        "import sys\n"
        "import numpy as np, pandas as pd\n"
        "from pathlib import Path\n"
        "from pixel_detective_dagster.projection import ModelStore, ProjectionSettings, make_engine, update_map\n"
        f"vectors, previous = np.load({str(tmp_path / 'vectors.npy')!r}), pd.read_parquet({str(tmp_path / 'map.parquet')!r})\n"
        f"update = update_map([f'p{{i}}' for i in range(360)], vectors, previous, ModelStore(Path({str(store.path)!r})), "
        "make_engine('torch'), ProjectionSettings(seed=0))\n"
        "assert update.counts() == {'fit': 0, 'transform': 60, 'kept': 300}, update.counts()\n"
        "assert update.trustworthiness > 0.9, update.trustworthiness\n"
        "loaded = {'torch', 'sklearn', 'scipy.optimize', 'numba'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_covariance_pca_is_scikit_learns(data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.decomposition import PCA

    x = data[0]
    ours, theirs = CovariancePCA(10).fit(x), PCA(10).fit(x)
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, rtol=1e-4)
    np.testing.assert_allclose(np.abs(ours.transform(x)), np.abs(theirs.transform(x)), atol=1e-4)  # signs may differ


def test_trustworthiness_is_scikit_learns(data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.manifold import trustworthiness as reference

    vectors = data[0]
    rng = np.random.default_rng(0)
    for coords in (vectors[:, :2] + 0.1 * rng.normal(size=(360, 2)), rng.normal(size=(360, 2))):
        ours = trustworthiness(vectors.astype(np.float32), coords, 7)
        assert ours == pytest.approx(reference(vectors, coords, n_neighbors=7, metric="cosine"), abs=1e-6)


def test_maps_saved_with_a_pca_estimator_still_place_points(data: tuple[np.ndarray, np.ndarray]) -> None:
    """Models saved before the PCA was kept as arrays hold scikit-learn's estimator, and no curve."""
    from sklearn.decomposition import PCA

    vectors = data[0]
    engine = TorchEngine("cpu")
    reducer, _ = engine.fit(vectors[:300], SETTINGS)
    expected = engine.transform(reducer, vectors[300:], SETTINGS)
    x = vectors[:300] / np.linalg.norm(vectors[:300], axis=1, keepdims=True)
    estimator = PCA(n_components=SETTINGS.pca_dims).fit(x)
    estimator.mean_, estimator.components_ = reducer.pca
    reducer.pca, reducer.umap.curve = estimator, None
    np.testing.assert_allclose(engine.transform(reducer, vectors[300:], SETTINGS), expected, atol=1e-4)


def test_torch_map_is_as_trustworthy_as_umap_learns(data: tuple[np.ndarray, np.ndarray]) -> None:
    vectors = data[0]
    scores = {
        name: map_trustworthiness(vectors, make_engine(name).fit(vectors, SETTINGS)[1], SETTINGS)
        for name in ("torch", "umap-learn")
    }
    assert scores["torch"] > 0.95 and scores["torch"] >= scores["umap-learn"] - 0.01, scores


def test_a_fresh_process_maps_without_importing_numba() -> None:
    code = (
        "import sys\n"
        "from pixel_detective_dagster.projection import ProjectionSettings, choose_engine, make_engine\n"
        "from pixel_detective_dagster.projection.synthetic import clustered_vectors\n"
        "engine = make_engine(choose_engine('auto').name)\n"
        "coords = engine.fit(clustered_vectors(400, dim=64)[0], ProjectionSettings(seed=0))[1]\n"
        "assert coords.shape == (400, 2)\n"
        "loaded = {'numba', 'umap', 'pynndescent', 'torch', 'sklearn'} & set(sys.modules)\n"
        "assert not loaded, loaded  # a small map runs in numpy: no JIT, no torch or scikit-learn import\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


# --- engine selection ----------------------------------------------------------------------------------------


def fake_gpu_stack(monkeypatch: pytest.MonkeyPatch, devices: int | Exception) -> None:
    """Make ``import cuml`` / ``import cupy`` succeed with a device count (or a CUDA error)."""

    def count() -> int:
        if isinstance(devices, Exception):
            raise devices
        return devices

    cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=count)))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cuml", types.SimpleNamespace(__version__="25.02"))


def test_auto_falls_back_to_torch_with_the_reason_and_forced_cuml_fails_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cuml", None)  # as on a machine without the gpu extra
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    choice = choose_engine("auto")
    assert choice.name == "torch" and "cuML/cupy are not installed" in choice.reason and "gpu" in choice.reason
    assert "UMAP in torch on cpu" in choice.reason
    with pytest.raises(EngineUnavailableError, match="'cuml' was requested .*PIXEL_DETECTIVE_PROJECTION_ENGINE"):
        choose_engine("cuml")
    assert [choose_engine(name).name for name in (" CPU ", "torch", "umap-learn")] == ["cpu", "torch", "umap-learn"]
    with pytest.raises(ValueError, match="unknown projection engine"):
        choose_engine("tsne")


def test_without_cuml_a_cuda_machine_maps_with_torch_on_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cuml", None)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    choice = choose_engine("auto")
    assert choice.name == "torch" and "UMAP in torch on cuda" in choice.reason
    engine = make_engine(choice.name)
    assert isinstance(engine, TorchEngine) and engine.device is None  # TorchUMAP then picks CUDA
    assert make_engine("cpu").device == "cpu" and make_engine("cpu").name == "torch"  # same saved models


def test_auto_picks_cuml_only_when_a_cuda_device_is_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu_stack(monkeypatch, RuntimeError("cudaErrorNoDevice"))
    choice = choose_engine("auto")
    assert choice.name == "torch" and "CUDA is unusable: cudaErrorNoDevice" in choice.reason
    fake_gpu_stack(monkeypatch, 0)
    assert "no CUDA device" in choose_engine("auto").reason
    fake_gpu_stack(monkeypatch, 2)
    choice = choose_engine("auto")
    assert choice.name == "cuml" and "2 CUDA device(s)" in choice.reason
    assert choose_engine("cuml").name == "cuml"


def test_projection_resource_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIXEL_DETECTIVE_PROJECTION_ENGINE", "cpu")
    monkeypatch.setenv("PIXEL_DETECTIVE_PROJECTION_REFIT", "true")
    monkeypatch.setenv("PIXEL_DETECTIVE_PROJECTION_REFIT_FRACTION", "0.25")
    with build_resources(resources_from_env()) as resources:
        projection = resources.projection
        assert projection.resolved_engine() == "cpu" and projection.refit is True
        assert projection.settings().refit_fraction == 0.25
    monkeypatch.setenv("PIXEL_DETECTIVE_PROJECTION_REFIT", "maybe")
    with pytest.raises(
        ValueError, match=r"projection.refit \(PIXEL_DETECTIVE_PROJECTION_REFIT\) must be true or false"
    ):
        resources_from_env()


# --- incremental maps -----------------------------------------------------------------------------------------


def test_new_batch_is_transformed_onto_the_saved_map_then_refit_past_the_fraction(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors, truth = data
    store, engine = ModelStore(tmp_path / "model.joblib"), TorchEngine()
    first = update_map(ids_of(200), vectors[:200], None, store, engine, SETTINGS)
    assert first.mode == "fit" and "no saved model" in first.reason and store.path.exists()
    assert first.counts() == {"fit": 200, "transform": 0, "kept": 0}

    # +25 %: below the 50 % refit fraction; a fresh store object reads the model back from disk
    second = update_map(ids_of(250), vectors[:250], first.frame(), ModelStore(store.path), engine, SETTINGS)
    assert second.mode == "transform" and "below the refit fraction 50%" in second.reason
    assert second.fit_id == first.fit_id and second.counts() == {"fit": 0, "transform": 50, "kept": 200}
    np.testing.assert_array_equal(second.coords[:200], first.coords)  # old points do not move
    # new points land beside points of their own group
    nearest = np.linalg.norm(second.coords[200:, None] - first.coords[None], axis=2).argmin(axis=1)
    assert (truth[nearest] == truth[200:250]).mean() > 0.9

    # coordinates stored by another model are not reused: everything is placed by the saved one
    stale = first.frame().assign(fit_id="older")
    assert update_map(ids_of(250), vectors[:250], stale, store, engine, SETTINGS).counts()["transform"] == 250

    # +80 % since the fit: a full refit with a new model
    third = update_map(ids_of(360), vectors, second.frame(), store, engine, SETTINGS)
    assert third.mode == "fit" and "grew 80%" in third.reason and "reaching the refit fraction" in third.reason
    assert third.fit_id != first.fit_id and third.counts()["fit"] == 360
    assert store.load().fitted_points == 360


def test_refit_on_request_engine_change_and_sample_fit(tmp_path: Path, data: tuple[np.ndarray, np.ndarray]) -> None:
    saved = SavedModel(Reducer("cuml", 96, "umap"), 100, "f")
    assert plan_update(saved, 110, 96, "cpu", False, 0.5) == (
        "fit",
        "the saved model was fitted by the cuml engine, this run uses cpu",
    )
    assert plan_update(saved, 110, 512, "cuml", False, 0.5)[0] == "fit"
    assert plan_update(saved, 110, 96, "cuml", True, 0.5) == ("fit", "refit requested")
    assert plan_update(saved, 110, 96, "cuml", False, 0.05)[0] == "fit"
    assert plan_update(saved, 90, 96, "cuml", False, 0.5)[0] == "transform"  # shrinking never forces a refit

    vectors = data[0][:300]
    sampled = update_map(
        ids_of(300),
        vectors,
        None,
        ModelStore(tmp_path / "m.joblib"),
        TorchEngine(),
        ProjectionSettings(seed=0, fit_sample=120),
    )
    assert sampled.mode == "fit" and "fitted on a sample of 120 of 300 points" in sampled.reason
    assert sampled.counts() == {"fit": 120, "transform": 180, "kept": 0}
    assert sampled.trustworthiness is not None and sampled.trustworthiness > 0.9


# --- quality and labels ---------------------------------------------------------------------------------------


def test_trustworthiness_is_high_for_a_map_of_clustered_data_and_low_for_noise(
    tmp_path: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    vectors = data[0][:200]
    update = update_map(ids_of(200), vectors, None, ModelStore(tmp_path / "m.joblib"), TorchEngine(), SETTINGS)
    assert update.trustworthiness is not None and update.trustworthiness > 0.9
    scrambled = np.random.default_rng(0).normal(size=(200, 2))
    assert map_trustworthiness(vectors, scrambled, SETTINGS) < 0.7
    sampled = map_trustworthiness(vectors, update.coords, ProjectionSettings(trust_sample=100))
    assert sampled is not None and abs(sampled - update.trustworthiness) < 0.05
    assert map_trustworthiness(vectors[:4], update.coords[:4], SETTINGS) is None


def test_cluster_names_are_the_words_that_set_a_cluster_apart() -> None:
    captions = [
        "a dog running on the beach on a sunny day",
        "a brown dog playing with a ball on the beach",
        "arafed dog lying on the beach sand",
        "a red car parked on a sunny street",
        "a blue car driving down the street",
        "an old car on the street at night",
        "a blurry picture of something sunny",
        None,
    ]
    labels = np.array([0, 0, 0, 1, 1, 1, -1, -1])
    names = cluster_names(labels, captions)
    assert names[0].split(", ")[:2] == ["beach", "dog"]
    assert names[1].split(", ")[:2] == ["car", "street"]
    assert names[-1] == "unclustered"
    assert not {"sunny", "arafed", "picture"} & set(", ".join(names.values()).split(", "))
    assert cluster_names(np.array([0, 0]), ["", None]) == {0: "cluster 0"}


@pytest.mark.parametrize("clusterer", ["hdbscan", "dbscan"])
def test_label_map_names_clusters_and_flags_outliers(clusterer: str) -> None:
    rng = np.random.default_rng(0)
    blobs = np.concatenate([c + 0.15 * rng.normal(size=(40, 2)) for c in ([0, 0], [6, 0], [0, 6])])
    coords = np.concatenate([blobs, [[20, 20], [-15, 12]]]).astype(np.float32)
    vectors = rng.normal(size=(122, 8)).astype(np.float32)
    captions = ["a cat on a sofa"] * 40 + ["a red bicycle"] * 40 + ["snowy mountain peak"] * 40 + ["a lamp", "a shoe"]
    table = label_map(ids_of(122), coords, vectors, captions, TorchEngine(), ProjectionSettings(clusterer=clusterer))
    assert list(table.columns) == ["id", "x", "y", "cluster", "cluster_name", "membership", "outlier", "kmeans_cluster"]
    assert table["outlier"].iloc[-2:].all() and table["outlier"].iloc[:120].mean() < 0.1
    named = table.iloc[:120].groupby("cluster")["cluster_name"].first()
    assert sorted(named.str.split(", ").str[0]) == ["bicycle", "cat", "mountain"]


# --- the assets -----------------------------------------------------------------------------------------------


def test_assets_write_coordinates_clusters_and_quality_then_transform_the_next_batch(
    env: Path, data: tuple[np.ndarray, np.ndarray]
) -> None:
    from pixel_detective_dagster.defs.assets.maps import image_clusters, umap_projection

    vectors, truth = data
    words = ["harbour boats", "forest trail", "city skyline", "birthday cake", "snowy mountain"]
    resources = resources_from_env()
    with build_resources(resources) as r:
        index = r.vector_index.for_collection(
            r.storage.layout, "maps", dim=vectors.shape[1], model="open_clip:synthetic:none:fp32"
        )

        def add(rows: range) -> None:
            index.upsert(
                [
                    IndexPoint(
                        point_id("maps", f"h{i}"),
                        vectors[i],
                        {"hash": f"h{i}", "path": f"{i}.jpg", "caption": f"a photo of {words[truth[i]]}"},
                    )
                    for i in rows
                ]
            )

        def run(key: str) -> dict:
            instance.add_dynamic_partitions(PARTITIONS_NAME, [key])
            result = materialize(
                [umap_projection, image_clusters], partition_key=key, resources=resources, instance=instance
            )
            assert result.success
            return {
                e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()
            }

        instance = DagsterInstance.ephemeral()
        add(range(200))
        first = run("maps-000001")
        umap_meta, cluster_meta = first["umap_projection"], first["image_clusters"]
        assert umap_meta["maps/mode"] == "fit" and umap_meta["maps/trustworthiness"] > 0.9
        assert umap_meta["engine"] == choose_engine().name and "cuML" in umap_meta["engine_reason"]
        assert (
            cluster_meta["maps/density_clusters"] >= 3
            and "| cluster | name | points |" in cluster_meta["maps/cluster_names"]
        )
        before = {p.id: p.payload for p in index.all_points(with_vectors=False)}
        assert all(
            {"umap_x", "umap_y", "cluster", "cluster_name", "outlier", "kmeans_cluster"} <= set(p)
            for p in before.values()
        )
        named = {p["cluster_name"].split(", ")[0] for p in before.values() if p["cluster"] >= 0}
        assert named <= {
            "harbour",
            "boats",
            "forest",
            "trail",
            "city",
            "skyline",
            "birthday",
            "cake",
            "snowy",
            "mountain",
        }

        add(range(200, 240))
        add(range(1))  # re-upserted as a duplicate's content would be: its payload loses the map fields
        second = run("maps-000002")["umap_projection"]
        assert second["maps/mode"] == "transform" and second["maps/points_kept"] == 200
        assert second["maps/payloads_updated"] == 41  # the new points and the re-upserted one
        after = {p.id: p.payload for p in index.all_points(with_vectors=False)}
        assert all((after[i]["umap_x"], after[i]["umap_y"]) == (p["umap_x"], p["umap_y"]) for i, p in before.items())
        assert DataLayout(env).collection_dir("maps").joinpath("projection_model.joblib").exists()
