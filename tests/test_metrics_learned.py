"""Learned metrics against their reference packages, with random or tiny networks (no downloads)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from benchmark.metrics import to_signed_float, to_unit_float
from benchmark.metrics.frame import LPIPS
from benchmark.metrics.frechet import ClipMoments, FrechetDistance, frechet_distance, to_fixed_point
from benchmark.metrics.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VideoMAEFeatures,
    build_inception,
    build_lpips,
    random_inception_state_dict,
    seeded,
)
from benchmark.metrics.temporal import VideoMAEDistance
from benchmark.metrics.testing import synthetic_clip, tiny_videomae
from benchmark.weights import NETWORKS, WeightsConfig

lpips = pytest.importorskip("lpips")
fid_score = pytest.importorskip("pytorch_fid.fid_score")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def clip():
    return synthetic_clip("learned", 4, 96, 64)


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Library caches pointing at an empty folder, so nothing real is found or downloaded."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


# ---- LPIPS -----------------------------------------------------------------------------------


def test_lpips_matches_a_direct_lpips_call(clip, empty_caches):
    generated, truth, _ = clip
    ours = build_lpips(WeightsConfig(random_init=True), "alex", seed=3)
    assert ours.random_weights
    with seeded(3), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    metric = LPIPS(1, ours.module)
    metric.update(generated, truth, 0)
    sums, counts = metric.compute()
    with torch.no_grad():
        direct = reference(to_unit_float(generated), to_unit_float(truth), normalize=True).flatten().double()
    assert counts == [len(truth)]
    assert sums[0] == pytest.approx(float(direct.sum()), rel=1e-12)
    assert metric.frame_distances(generated, truth) == direct.tolist()


def test_lpips_of_identical_frames_is_zero(clip, empty_caches):
    _, truth, _ = clip
    metric = LPIPS(1, build_lpips(WeightsConfig(random_init=True)).module)
    assert metric.frame_distances(truth, truth) == [0.0] * len(truth)


def test_lpips_backbone_loads_like_lpips_pretrained(clip, empty_caches):
    """A torchvision-format AlexNet file in the torch hub cache: lpips.LPIPS(pretrained backbone)
    and our loader must build the same network from it."""
    import torchvision

    generated, truth, _ = clip
    with seeded(7):
        state = torchvision.models.alexnet().state_dict()
    checkpoints = empty_caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(state, checkpoints / NETWORKS["lpips_alex"].filename)
    ours = build_lpips(WeightsConfig(), "alex")
    assert not ours.random_weights and str(checkpoints) in ours.source
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False).eval()
    a, b = to_signed_float(generated), to_signed_float(truth)
    with torch.no_grad():
        assert torch.equal(ours.module(a, b), reference(a, b))


# ---- Inception / FID -------------------------------------------------------------------------


def test_inception_features_match_pytorch_fid(clip, empty_caches):
    """The same weights file through pytorch-fid's own loader (hub cache) and through ours."""
    from pytorch_fid.inception import InceptionV3

    generated, _, _ = clip
    path = empty_caches / NETWORKS["inception"].filename
    torch.save(random_inception_state_dict(seed=1), path)
    ours = build_inception(WeightsConfig(inception=str(path)))
    checkpoints = empty_caches / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    path.rename(checkpoints / path.name)
    reference = InceptionV3([3]).eval()
    images = to_unit_float(generated[:2])
    with torch.no_grad():
        features = ours.module(images)
        assert features.shape == (2, 2048)
        assert torch.equal(features, reference(images)[0].flatten(1))
    assert float(features.std()) > 1e-3  # He-initialised random weights give usable features


def test_frechet_distance_matches_pytorch_fid():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 12)), rng.normal(0.3, 1.2, size=(300, 12))
    args = (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = fid_score.calculate_frechet_distance(*args)
    assert frechet_distance(*args) == pytest.approx(reference, rel=1e-12)


def _pooled(features_gen: np.ndarray, features_gt: np.ndarray, clips: int = 3) -> FrechetDistance:
    """Pool features as ``clips`` clips of one horizon through the fixed-point path."""
    metric = FrechetDistance(num_horizons=1, dim=features_gen.shape[1])
    for part_gen, part_gt in zip(np.array_split(features_gen, clips), np.array_split(features_gt, clips)):
        moments = ClipMoments(features_gen.shape[1])
        moments.add(0, torch.from_numpy(part_gen))
        moments.add(1, torch.from_numpy(part_gt))
        metric.update(0, moments.snapshot())
    return metric


def test_pooled_fixed_point_statistics_give_pytorch_fid_value():
    rng = np.random.default_rng(1)
    gen = np.abs(rng.normal(0.4, 0.5, size=(400, 16))).astype(np.float32)
    gt = np.abs(rng.normal(0.5, 0.4, size=(400, 16))).astype(np.float32)
    metric = _pooled(gen, gt)
    mean, covariance, n = metric.statistics(0, 0)
    assert n == 400
    np.testing.assert_allclose(mean, gen.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(covariance, np.cov(gen.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        reference = fid_score.calculate_frechet_distance(
            gen.mean(0, dtype=np.float64), np.cov(gen, rowvar=False), gt.mean(0, dtype=np.float64), np.cov(gt, rowvar=False)
        )
    assert metric.compute()[0] == pytest.approx(reference, rel=1e-6)


def test_fid_closed_forms():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(500, 8))
    assert abs(_pooled(features, features).compute()[0]) < 1e-9
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    identity = np.eye(8)
    assert frechet_distance(mu1, identity, mu2, identity) == pytest.approx(float(((mu1 - mu2) ** 2).sum()), rel=1e-12)


def test_fixed_point_sums_do_not_depend_on_sharding():
    rng = np.random.default_rng(3)
    contributions = [torch.from_numpy(rng.normal(size=(5, 7)) * 10 ** rng.uniform(-3, 3)) for _ in range(12)]
    forward = sum(to_fixed_point(c) for c in contributions)
    backward = sum(to_fixed_point(c) for c in reversed(contributions))
    halves = sum(to_fixed_point(c) for c in contributions[::2]) + sum(to_fixed_point(c) for c in contributions[1::2])
    assert torch.equal(forward, backward) and torch.equal(forward, halves)
    with pytest.raises(OverflowError):
        to_fixed_point(torch.tensor([2.0**31]))


# ---- VideoMAE --------------------------------------------------------------------------------


def test_videomae_preprocessing_matches_the_image_processor():
    from transformers import VideoMAEImageProcessor

    frames, _, _ = synthetic_clip("vmae-pre", 2, 832, 480)
    features = VideoMAEFeatures(tiny_videomae(num_frames=2, image_size=224, hidden_size=32))
    processor = VideoMAEImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    reference = processor(list(frames.numpy()), return_tensors="pt").pixel_values[0]
    ours = features.preprocess(frames)
    assert ours.shape == reference.shape == (2, 3, 224, 224)
    assert torch.allclose(ours, reference, atol=1e-5)


def test_vmae_distance_is_zero_for_identical_windows_and_positive_otherwise(clip):
    generated, truth, _ = clip
    features = VideoMAEFeatures(tiny_videomae(num_frames=4))
    with torch.no_grad():
        f_gen = features(features.preprocess(generated)[None])[0]
        f_gt = features(features.preprocess(truth)[None])[0]
    metric = VideoMAEDistance(num_windows=2)
    metric.update(f_gt, f_gt, 0)
    metric.update(f_gen, f_gt, 1)
    same, different = metric.compute()
    assert abs(same) < 1e-12 and 0 < different <= 2


def test_videomae_loads_from_a_local_folder_with_its_preprocessor_settings(clip, tmp_path, empty_caches):
    from transformers import VideoMAEImageProcessor

    from benchmark.metrics.networks import build_videomae

    generated, _, _ = clip
    model = tiny_videomae(num_frames=4, seed=5)
    folder = tmp_path / "videomae-base"
    model.save_pretrained(folder)
    VideoMAEImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(folder)
    loaded = build_videomae(WeightsConfig(videomae=str(folder)))
    assert not loaded.random_weights and str(folder) in loaded.source
    assert loaded.module.resize_to == 32 and loaded.module.scaled_mean.flatten().tolist() == [127.5] * 3
    reference = VideoMAEFeatures(model, mean=(0.5,) * 3, std=(0.5,) * 3)
    with torch.no_grad():
        clips = reference.preprocess(generated)[None]
        assert torch.equal(loaded.module.preprocess(generated), clips[0])
        assert torch.allclose(loaded.module(clips), reference(clips), atol=1e-6)
