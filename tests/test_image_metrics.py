"""ganx.metrics.image_metrics and the metric math it runs: precision/recall/density/coverage (prdc), FID/KID/IS against
independent computations with closed forms, protocol names, the on-disk reference cache (reference), clean resizing
(resize) and the perceptual path length's offline error (path_length)."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.spatial.distance
import torch
from helpers import TableFeatures, as_images, features
from torchmetrics.image import InceptionScore

from ganx.metrics import ImageMetrics, MetricsSetupError
from ganx.metrics.evaluations import best_values, metric_of
from ganx.metrics.image_metrics import protocol_key
from ganx.metrics.path_length import require_lpips_weights
from ganx.metrics.prdc import density_coverage, precision_recall
from ganx.metrics.reference import load_reference, reference_key, reference_path, save_reference
from ganx.metrics.resize import clean_resize


def brute_force_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The four definitions written out with scipy's full distance matrices."""
    rr, ff = scipy.spatial.distance.cdist(real, real), scipy.spatial.distance.cdist(fake, fake)
    real_radius, fake_radius = np.sort(rr, 1)[:, k], np.sort(ff, 1)[:, k]  # column 0: the point itself
    rf = scipy.spatial.distance.cdist(real, fake)  # (N real, M fake)
    return {"precision": float((rf <= real_radius[:, None]).any(0).mean()),
            "recall": float((rf <= fake_radius[None, :]).any(1).mean()),
            "density": float((rf < real_radius[:, None]).sum() / (k * len(fake))),
            "coverage": float((rf.min(1) < real_radius).mean())}


def all_four(real, fake, k=3):
    return {**precision_recall(real, fake, k, batch_size=37), **density_coverage(real, fake, k, batch_size=37)}


def test_identical_sets_have_full_precision_recall_coverage_and_density_about_one():
    x = features(300, 5, seed=0)
    values = all_four(x, x.clone())
    assert values["precision"] == values["recall"] == values["coverage"] == 1.0
    assert values["density"] == pytest.approx(1.0, abs=0.15)


def test_far_disjoint_sets_score_zero():
    values = all_four(features(200, 5, seed=1), features(200, 5, seed=2, shift=100.0))
    assert values == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_a_generator_covering_one_corner_has_high_precision_and_low_recall():
    real = features(600, 2, seed=3)
    corner = real[real[:, 0] > real[:, 0].quantile(0.8)]  # a fifth of the real set: faithful but not diverse
    values = all_four(real, corner)
    assert values["precision"] == 1.0 and values["recall"] < 0.4 and values["coverage"] < 0.4


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_agree_with_brute_force_knn_on_random_data(k):
    real, fake = features(250, 6, seed=4).double(), features(180, 6, seed=5, shift=0.3).double()
    expected = brute_force_prdc(real.numpy(), fake.numpy(), k)
    assert all_four(real, fake, k) == pytest.approx(expected, abs=1e-6)  # torch-fidelity averages in float32


def test_image_metrics_log_prdc_on_the_fid_features():
    real, fake = features(120, 4, seed=6), features(120, 4, seed=7, shift=0.2)
    metrics = ImageMetrics(TableFeatures(4, 0), names=["fid", "pr", "dc"])
    metrics.update(as_images(real), as_images(fake))
    values = metrics.compute()
    expected = brute_force_prdc(real.double().numpy(), fake.double().numpy(), 3)
    assert {k: values[k] for k in expected} == pytest.approx(expected, abs=1e-6)


# --- closed forms and hand-written estimators ----------------------------------------------------------------------


def gaussian(n: int, mean: np.ndarray, std: np.ndarray, seed: int) -> torch.Tensor:
    """n samples with exactly this mean and these per-dimension standard deviations (whitened, then scaled)."""
    x = np.random.default_rng(seed).standard_normal((n, len(mean)))
    x = (x - x.mean(0)) @ np.linalg.inv(np.linalg.cholesky(np.cov(x, rowvar=False))).T
    return torch.from_numpy(x * std + mean)


def fid_of(real: torch.Tensor, fake: torch.Tensor) -> float:
    metrics = ImageMetrics(TableFeatures(real.shape[1], 0), names=["fid"])
    metrics.update(as_images(real), as_images(fake))
    return metrics.compute()["fid"]


def test_fid_of_unit_gaussians_is_the_squared_mean_distance():
    mu = np.array([0.5, -1.0, 2.0, 0.0])
    fid = fid_of(gaussian(500, np.zeros(4), np.ones(4), 0), gaussian(500, mu, np.ones(4), 1))
    assert fid == pytest.approx(float(mu @ mu), rel=1e-4)


def test_fid_of_diagonal_gaussians_is_the_closed_form_and_scipy_sqrtm_agrees():
    mu1, mu2 = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, -1.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    real, fake = gaussian(400, mu1, s1, 2), gaussian(400, mu2, s2, 3)
    closed_form = float(((mu1 - mu2) ** 2).sum() + ((s1 - s2) ** 2).sum())  # tr(S1 + S2 - 2 (S1 S2)^1/2), diagonal
    c1, c2 = np.diag(s1**2), np.diag(s2**2)
    with_sqrtm = float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real))
    assert with_sqrtm == pytest.approx(closed_form)
    assert fid_of(real, fake) == pytest.approx(closed_form, rel=1e-4)


def unbiased_mmd2_polynomial(x: np.ndarray, y: np.ndarray) -> float:
    """Binkowski et al. 2018 eq. 3 with k(a, b) = (a.b / d + 1)^3, written out: means over off-diagonal pairs."""
    d = x.shape[1]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    m, n = len(x), len(y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def test_kid_on_one_full_subset_is_the_hand_written_unbiased_mmd():
    real, fake = features(150, 6, seed=8).double(), features(150, 6, seed=9, shift=0.4).double()
    metrics = ImageMetrics(TableFeatures(6, 0), names=["kid"], kid_subsets=1, kid_subset_size=150)
    metrics.update(as_images(real), as_images(fake))
    # One subset of all 150 images: the subset is the whole (reordered) set, so KID is exactly this MMD^2.
    assert metrics.compute()["kid"] == pytest.approx(unbiased_mmd2_polynomial(real.numpy(), fake.numpy()), rel=1e-4)


def test_inception_score_equals_torchmetrics_on_the_same_logits_and_the_hand_formula():
    logits = torch.randn(200, 7, generator=torch.Generator().manual_seed(10)) * 3
    metrics = ImageMetrics(TableFeatures(0, 7), names=["is"], is_splits=1)
    metrics.update(None, as_images(logits))
    ours = metrics.compute()["is"]
    reference = InceptionScore(feature=torch.nn.Identity(), splits=1)
    reference.update(logits)
    p = logits.double().softmax(1)
    hand = math.exp(float((p * (p.log() - p.mean(0).log())).sum(1).mean()))  # exp E_x KL(p(y|x) || p(y))
    assert ours == pytest.approx(float(reference.compute()[0]), rel=1e-5) and ours == pytest.approx(hand, rel=1e-4)


# --- protocol names, the reference cache, resizing, PPL offline ------------------------------------------------------


def test_protocol_names_say_count_split_and_extractor_and_stay_lower_is_better():
    assert protocol_key("fid", 50_000, "val", "inception-v3-compat:6726825d") == "fid50k_val_inception"
    assert protocol_key("kid", 1500, "val", "classifier:mnist:ab12", "clean") == "kid1500_val_classifier_clean"
    assert [metric_of(k) for k in ("val/fid2k_val_classifier", "val/intra_fid/3", "val/precision")] == [
        "fid", "intra_fid", "precision"]
    history = [{"val/fid2k_val_classifier": 5.0}, {"val/fid2k_val_classifier": 3.0}]
    assert best_values(history) == {"val/fid2k_val_classifier": 3.0}


def test_reference_cache_hits_for_the_same_key_and_recomputes_when_any_part_changes(tmp_path):
    key = reference_key("abcd", "val", "classifier:mnist:1234", "legacy", 120)
    real, fake = features(120, 4, seed=11), features(120, 4, seed=12, shift=0.5)
    first = ImageMetrics(TableFeatures(4, 0), names=["fid", "kid", "pr"], kid_subset_size=50)
    assert not first.use_reference_cache(reference_path(key, tmp_path), key)
    first.update(as_images(real), as_images(fake))
    values = first.compute()
    assert reference_path(key, tmp_path).is_file()

    second = ImageMetrics(TableFeatures(4, 0), names=["fid", "kid", "pr"], kid_subset_size=50)
    assert second.use_reference_cache(reference_path(key, tmp_path), key) and not second.needs_real
    second.update(as_images(torch.zeros(120, 4)), as_images(fake))  # a hit: the real batches are not extracted
    assert second.compute() == pytest.approx(values, rel=1e-6)

    for changed in ({"extractor": "classifier:mnist:5678"}, {"split": "train"}, {"data": "ef01"},
                    {"resize": "clean"}, {"count": 100}):
        other = {**key, **changed}
        assert reference_path(other, tmp_path) != reference_path(key, tmp_path)
        assert load_reference(reference_path(other, tmp_path), other) is None
    save_reference(reference_path(key, tmp_path), {**key, "count": 7}, real[:7])  # a file holding another key
    assert load_reference(reference_path(key, tmp_path), key) is None


def test_clean_resize_is_pil_bicubic_and_keeps_images_at_the_input_size():
    from PIL import Image

    images = torch.rand(2, 1, 28, 28) * 2 - 1
    assert clean_resize(images, 28) is images
    resized = clean_resize(images, 64)
    pil = Image.fromarray(((images[0, 0] + 1) * 127.5).numpy(), mode="F").resize((64, 64), Image.BICUBIC)
    expected = (torch.from_numpy(np.asarray(pil)) / 127.5 - 1).clamp(-1, 1)
    assert resized.shape == (2, 1, 64, 64) and torch.allclose(resized[0, 0], expected, atol=1e-6)
    with pytest.raises(MetricsSetupError, match="resize=legacy"):
        ImageMetrics(TableFeatures(4, 0), names=["fid"], resize="clean")


def test_perceptual_path_length_offline_without_lpips_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_network(url, dst, *args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(MetricsSetupError, match="VGG-16 weights.*leave ppl out"):
        require_lpips_weights()
