"""FID / IS / KID against independent computations, the feature extractors, the offline errors, Parzen, and the
training-time metrics (validation loop, best checkpoint, ganx.evaluate reproducing the logged numbers)."""

import json
import math
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from helpers import (
    FAST,
    ProjectionFeatures,
    TableFeatures,
    as_images,
    features,
    fit,
    metrics_cfg,
    run_cli,
    tiny_gan_28,
    train_in_process,
    write_image_folder,
    write_mnist_raw,
)
from omegaconf import OmegaConf

from ganx.data import MNISTDataModule
from ganx.data.base import ShardSampler
from ganx.features import FeaturesConfig, train_features
from ganx.metrics import (
    ClassifierFeatures,
    ImageMetrics,
    ImageMetricsCallback,
    InceptionFeatures,
    MetricsSetupError,
    build_training_metrics,
)
from ganx.metrics.extractors.base import to_uint8
from ganx.metrics.extractors.classifier import (
    RECIPE,
    ClassifierError,
    SmallCNN,
    cache_dir,
    cache_key,
    classifier_data,
    ensure_classifier,
    load_classifier,
    save_classifier,
)
from ganx.metrics.extractors.inception import INCEPTION_WEIGHTS_FILE
from ganx.metrics.parzen import parzen_estimate, parzen_log_likelihood
from ganx.models import GAN
from ganx.presets import compose_data_config


def pytorch_fid_formula(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance as pytorch-fid computes it (numpy means/covariances, scipy sqrtm)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real))


# --- the metrics against independent computations ---------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero():
    x = features(300, 8, seed=0)
    metrics = ImageMetrics(TableFeatures(8, 0), names=["fid"])
    for chunk in as_images(x).split(64):
        metrics.update(chunk, chunk)
    values = metrics.compute()
    assert abs(values["fid"]) < 1e-3
    assert values["num_real"] == values["num_fake"] == 300


def test_fid_equals_the_pytorch_fid_formula_on_the_same_features():
    real, fake = features(400, 8, seed=1), features(300, 8, seed=2, shift=0.5)
    metrics = ImageMetrics(TableFeatures(8, 0), names=["fid"])
    for r, f in zip(as_images(real).split(100), as_images(fake).split(75), strict=True):  # unequal counts
        metrics.update(r, f)
    expected = pytorch_fid_formula(real.double().numpy(), fake.double().numpy())
    assert expected > 1.0
    assert metrics.compute()["fid"] == pytest.approx(expected, rel=1e-4)


def test_inception_score_is_one_for_identical_predictions_and_k_for_even_confident_ones():
    k = 5
    same = torch.zeros(100, k)
    same[:, 2] = 30.0
    metrics = ImageMetrics(TableFeatures(0, k), names=["is"], is_splits=1)
    metrics.update(None, as_images(same))
    assert metrics.compute()["is"] == pytest.approx(1.0, abs=1e-5)

    spread = 30.0 * torch.eye(k).repeat(20, 1)  # 20 confident predictions of each class
    metrics = ImageMetrics(TableFeatures(0, k), names=["is"], is_splits=1)
    metrics.update(None, as_images(spread))
    assert metrics.compute()["is"] == pytest.approx(float(k), rel=1e-4)


def test_kid_of_identical_sets_is_near_zero_and_of_different_sets_is_not():
    x = features(200, 8, seed=3)
    same = ImageMetrics(TableFeatures(8, 0), names=["kid"], kid_subsets=20, kid_subset_size=100)
    same.update(as_images(x), as_images(x))
    different = ImageMetrics(TableFeatures(8, 0), names=["kid"], kid_subsets=20, kid_subset_size=100)
    different.update(as_images(x), as_images(features(200, 8, seed=4, shift=1.0)))
    kid_same, kid_different = same.compute()["kid"], different.compute()["kid"]
    assert kid_different > 0.1
    assert abs(kid_same) < 0.02 * kid_different


def test_kid_subset_size_is_capped_at_the_number_of_images():
    metrics = ImageMetrics(TableFeatures(8, 0), names=["kid"], kid_subset_size=1000)
    x = as_images(features(50, 8, seed=5))
    metrics.update(x, x)
    metrics.compute()
    assert metrics.kid.subset_size == 50


def test_kid_on_whole_sets_is_one_mmd_without_a_spread():
    """Subsets as large as both sets are all the same set: KID is that one MMD^2 and no std is reported (it would be
    0, which reads as a precise number); with smaller subsets the std is there."""
    real, fake = as_images(features(60, 8, seed=5)), as_images(features(60, 8, seed=6, shift=0.5))
    whole = ImageMetrics(TableFeatures(8, 0), names=["kid"], kid_subsets=5, kid_subset_size=1000)
    whole.update(real, fake)
    values = whole.compute()
    assert "kid_std" not in values and whole.kid.subsets == 5
    x, y = real.flatten(1).double(), fake.flatten(1).double()

    def kernel(a, b):  # torchmetrics' default: polynomial, degree 3, gamma 1/d, coef 1
        return (a @ b.T / 8 + 1) ** 3

    def off_diagonal_mean(k):
        return (k.sum() - k.diag().sum()) / (len(k) * (len(k) - 1))

    mmd2 = off_diagonal_mean(kernel(x, x)) + off_diagonal_mean(kernel(y, y)) - 2 * kernel(x, y).mean()  # unbiased
    assert values["kid"] == pytest.approx(float(mmd2), rel=1e-4)
    smaller = ImageMetrics(TableFeatures(8, 0), names=["kid"], kid_subsets=5, kid_subset_size=30)
    smaller.update(real, fake)
    assert smaller.compute()["kid_std"] > 0


def test_real_statistics_are_kept_and_generated_ones_reset_between_evaluations():
    real, fake1, fake2 = features(200, 8, seed=6), features(200, 8, seed=7, shift=0.3), features(200, 8, seed=8)
    metrics = ImageMetrics(TableFeatures(8, 2), names=["fid", "kid"], kid_subset_size=100)
    metrics.update(as_images(torch.cat([real, torch.zeros(200, 2)], 1)), as_images(torch.cat([fake1, torch.zeros(200, 2)], 1)))
    metrics.compute()
    metrics.reset()
    # Second evaluation: the real batch is ignored (its statistics are complete), only the new fakes count.
    metrics.update(as_images(torch.zeros(200, 10)), as_images(torch.cat([fake2, torch.zeros(200, 2)], 1)))
    values = metrics.compute()
    assert values["num_real"] == 200 and values["num_fake"] == 200
    assert values["fid"] == pytest.approx(pytorch_fid_formula(real.double().numpy(), fake2.double().numpy()), rel=1e-4)


def test_unknown_metric_names_are_refused():
    with pytest.raises(ValueError, match="fid, is, kid"):
        ImageMetrics(TableFeatures(2, 2), names=["fid", "lpips"])


def test_generator_range_is_mapped_to_uint8_like_a_saved_png():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0, 1.2])
    assert to_uint8(x).tolist() == [0, 0, 128, 191, 255, 255]


# --- feature extractors ------------------------------------------------------------------------------------------------


def test_inception_features_are_torchmetrics_fid_features_for_gray_and_rgb(random_inception_weights: Path):
    from torchmetrics.image.fid import FrechetInceptionDistance

    extractor = InceptionFeatures(random_inception_weights)
    rgb = torch.rand(2, 3, 32, 32) * 2 - 1
    out = extractor(rgb)
    assert out.shape == (2, 2048 + 1008)
    reference = FrechetInceptionDistance(feature=2048, feature_extractor_weights_path=str(random_inception_weights))
    assert torch.allclose(out[:, :2048], reference.inception(to_uint8(rgb)), atol=1e-5)
    gray = rgb[:, :1]
    assert torch.allclose(extractor(gray), extractor(gray.expand(-1, 3, -1, -1)))
    assert extractor.name.startswith("inception-v3-compat:") and extractor.training is False


def image_data_cfg(folder: Path):
    return OmegaConf.create({"_target_": "ganx.data.ImageFolderDataModule", "root": str(folder), "image_size": 16})


def test_offline_without_inception_weights_is_a_clear_error_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    data = image_data_cfg(tmp_path / "images")  # RGB data (features=auto falls back: tests/test_domain_features.py)
    with pytest.raises(MetricsSetupError) as err:
        build_training_metrics(metrics_cfg(features="inception"), data)
    message = str(err.value)
    for hint in (str(tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_WEIGHTS_FILE), "metrics.inception_weights=",
                 "metrics.features=classifier", "metrics=none", "URLError"):
        assert hint in message, hint
    with pytest.raises(MetricsSetupError, match="metrics.inception_weights=/nowhere/w.pth: no such file"):
        build_training_metrics(metrics_cfg(inception_weights="/nowhere/w.pth"), data)


def test_inception_weights_file_in_the_torch_hub_cache_is_used_without_network(tmp_path, monkeypatch,
                                                                               random_inception_weights):
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / INCEPTION_WEIGHTS_FILE).symlink_to(random_inception_weights)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: pytest.fail("tried to download"))
    callback = build_training_metrics(metrics_cfg(names=["fid"], best_by="fid"), image_data_cfg(tmp_path))
    assert isinstance(callback.metrics.extractor, InceptionFeatures)


def test_non_image_data_get_no_image_metrics():
    toy = OmegaConf.create({"_target_": "ganx.data.toy.GaussianMixtureDataModule"})
    assert build_training_metrics(metrics_cfg(), toy) is None
    assert build_training_metrics(OmegaConf.create({}), toy) is None  # metrics=none


@pytest.fixture(scope="module")
def tiny_mnist(tmp_path_factory) -> Path:
    return write_mnist_raw(tmp_path_factory.mktemp("mnist") / "data", n_train=256, n_test=64)


def test_classifier_is_trained_once_cached_and_gives_features_and_logits(tiny_mnist: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("GANX_CACHE_DIR", str(tmp_path / "cache"))
    # The recipe's floor of 600 updates (for a useful classifier) takes over a minute here; the recipe's 2 epochs
    # (4 updates on 256 images) exercise the same training, caching and loading.
    monkeypatch.setitem(RECIPE, "min_steps", 0)
    data = compose_data_config("mnist", [f"data.data_dir={tiny_mnist}"])
    with torch.no_grad():  # as ganx.evaluate builds it on first use: training must still get gradients
        path = ensure_classifier(data)
    assert path.parent == tmp_path / "cache" / "classifiers" and path.name.startswith("mnist-")
    mtime = path.stat().st_mtime_ns
    assert ensure_classifier(data) == path and path.stat().st_mtime_ns == mtime  # cached: not retrained
    model, meta = load_classifier(path)
    assert isinstance(model, SmallCNN) and 0.0 <= meta["test_accuracy"] <= 1.0 and meta["test_images"] == 64
    extractor = ClassifierFeatures(path)
    out = extractor(torch.rand(3, 1, 32, 32) * 2 - 1)  # other sizes are resized to the classifier's 28x28
    assert out.shape == (3, 128 + 10)
    assert extractor.info["test_accuracy"] == meta["test_accuracy"] and extractor.name.startswith("classifier:mnist-")
    with pytest.raises(ValueError, match="1-channel"):
        extractor(torch.zeros(1, 3, 28, 28))


def test_ganx_features_trains_the_classifier_of_labeled_grayscale_data_into_out(tiny_mnist: Path, tmp_path,
                                                                                monkeypatch):
    monkeypatch.setitem(RECIPE, "min_steps", 0)  # as above: the recipe's 2 epochs
    out = tmp_path / "cnn.pt"
    result = train_features(FeaturesConfig(data="mnist", out=str(out)), [f"data.data_dir={tiny_mnist}"])
    _, meta = load_classifier(out)
    assert result["kind"] == "classifier" and result["path"] == str(out)
    assert result["test_accuracy"] == meta["test_accuracy"] and result["test_images"] == 64
    with pytest.raises(MetricsSetupError, match="already exists"):
        train_features(FeaturesConfig(data="mnist", out=str(out)), [f"data.data_dir={tiny_mnist}"])


def test_a_file_that_is_not_a_classifier_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(ClassifierError, match="not a ganx classifier"):
        load_classifier(tmp_path / "x.pt")
    with pytest.raises(MetricsSetupError, match="needs labeled grayscale data"):
        build_training_metrics(metrics_cfg(features="classifier"), image_data_cfg(tmp_path))


# --- Parzen window -----------------------------------------------------------------------------------------------------


def direct_parzen(samples: np.ndarray, points: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.special import logsumexp

    sq = ((points[:, None, :] - samples[None, :, :]) ** 2).sum(-1)
    n, d = samples.shape
    return logsumexp(-sq / (2 * sigma**2), axis=1) - math.log(n) - 0.5 * d * math.log(2 * math.pi * sigma**2)


def test_parzen_on_samples_equal_to_the_test_points_matches_direct_logsumexp():
    rng = np.random.default_rng(0)
    points = rng.random((40, 784))
    sigma = 1e-3
    ours = parzen_log_likelihood(torch.from_numpy(points), torch.from_numpy(points), [sigma], chunk_size=16)[0].numpy()
    np.testing.assert_allclose(ours, direct_parzen(points, points, sigma), rtol=1e-9)
    # Tiny sigma: only the identical sample counts, so log p = -log n - d/2 log(2 pi sigma^2) exactly.
    np.testing.assert_allclose(ours, -math.log(40) - 392 * math.log(2 * math.pi * sigma**2), rtol=1e-9)


def test_parzen_picks_the_sigma_with_the_best_validation_likelihood_and_reports_the_standard_error():
    rng = np.random.default_rng(1)
    samples, val, test = (torch.from_numpy(rng.normal(size=(n, 3))) for n in (200, 50, 60))
    sigmas = [0.05, 0.3, 0.6, 3.0]
    result = parzen_estimate(samples, val, test, sigmas)
    val_means = [direct_parzen(samples.numpy(), val.numpy(), s).mean() for s in sigmas]
    assert result["sigma"] == sigmas[int(np.argmax(val_means))]
    test_ll = direct_parzen(samples.numpy(), test.numpy(), result["sigma"])
    assert result["log_likelihood"] == pytest.approx(test_ll.mean())
    assert result["standard_error"] == pytest.approx(test_ll.std(ddof=1) / math.sqrt(60))


# --- training-time metrics in Lightning's validation loop --------------------------------------------------------------


def test_shards_hold_every_index_once_without_padding():
    data = list(range(37))
    for world in (2, 3):
        shards = [list(ShardSampler(data, world, rank)) for rank in range(world)]
        assert sorted(sum(shards, [])) == data
        assert [len(s) for s in shards] == [len(ShardSampler(data, world, r)) for r in range(world)]


def fit_tiny_gan(data_dir: Path, steps: int, callbacks: list) -> GAN:
    torch.manual_seed(0)
    model = tiny_gan_28()
    datamodule = MNISTDataModule(data_dir=data_dir, batch_size=16, val_size=24, seed=0)
    fit(model, steps, datamodule=datamodule, val_check_interval=2, check_val_every_n_epoch=None,
        limit_val_batches=None if callbacks else 0, callbacks=callbacks)
    return model


def test_evaluations_run_every_eval_every_steps_and_at_the_end_without_changing_training(tiny_mnist, tmp_path):
    record = tmp_path / "evaluations.jsonl"
    metrics = ImageMetrics(ProjectionFeatures(784), names=["fid", "is", "kid"], kid_subset_size=10)
    with_metrics = fit_tiny_gan(tiny_mnist, steps=5, callbacks=[ImageMetricsCallback(metrics, record)])
    rows = [json.loads(line) for line in record.read_text().splitlines()]
    assert [r["generator_steps"] for r in rows] == [2, 4, 5]
    assert all(r["val/num_real"] == r["val/num_fake"] == 24 and r["protocol"]["features"] == "projection" for r in rows)
    without = fit_tiny_gan(tiny_mnist, steps=5, callbacks=[])
    # The metrics draw their noise from their own generator and seed their loaders: training is unaffected.
    for a, b in zip(with_metrics.generator.parameters(), without.generator.parameters(), strict=True):
        assert torch.equal(a, b)


def cache_untrained_classifier(data_dir: Path) -> Path:
    """Put a random-weights classifier where the CLIs look for the one of this MNIST data (the session's
    GANX_CACHE_DIR, under the key ensure_classifier computes): they find it instead of training one for a minute,
    which test_classifier_is_trained_once_cached_and_gives_features_and_logits covers."""
    datamodule = classifier_data(compose_data_config("mnist", [f"data.data_dir={data_dir}"]))
    stem, facts = cache_key(datamodule)
    path = cache_dir() / "classifiers" / f"{stem}.pt"
    torch.manual_seed(0)
    save_classifier(SmallCNN(1, 10), {"test_accuracy": 0.0, "test_images": 0}, facts, path)
    return path


@pytest.mark.e2e
def test_best_checkpoint_holds_the_best_fid_weights_and_evaluate_reproduces_it(tmp_path: Path, capsys):
    from ganx.evaluate import main as evaluate_main

    data = write_mnist_raw(tmp_path / "data", n_train=128, n_test=48)
    cached = cache_untrained_classifier(data)
    run = tmp_path / "run"
    flags = [f for f in FAST if f != "metrics=none"]
    train_in_process("model=gan", "data=mnist", f"data.data_dir={data}", "data.batch_size=16", "data.val_size=40",
                     "steps=7", "eval_every=2", "checkpoint_every=100", "sample_every=100", "model.generator.hidden=[32]",
                     "model.discriminator.hidden=[16]", "metrics.kid_subset_size=20", "metrics.allow_small_fid=true",
                     f"hydra.run.dir={run}", *flags, cwd=tmp_path)  # 40 images, 128-d classifier features: allowed here
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [r["generator_steps"] for r in rows] == [2, 4, 6, 7]
    assert all(r["val/num_real"] == r["val/num_fake"] == 40 and r["protocol"]["features"].startswith(f"classifier:{cached.stem}:")
               for r in rows)
    best_row = min(rows, key=lambda r: r["val/fid"])
    best = torch.load(run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert best["ganx"]["generator_steps"] == best_row["generator_steps"]
    assert best["callbacks"]["ImageMetricsCallback"]["protocol"]["features"] == best_row["protocol"]["features"]
    assert "metrics_protocol" not in best["ganx"]["config"]  # the stored config is the run's config.yaml
    results = json.loads((run / "results.json").read_text())
    assert results["best"]["val/fid"] == best_row["val/fid"] and results["final"]["generator_steps"] == 7
    logged = (run / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/fid" in logged and "val/num_fake" in logged

    # In-process: the evaluate CLI's own plumbing adds nothing a subprocess would check here.
    capsys.readouterr()
    evaluate_main([f"ckpt={run}/checkpoints/best.ckpt", "metrics=[fid,kid,parzen,classes]", "num_samples=40",
                   "kid_subset_size=20", "parzen_val_size=10", "allow_small_fid=true"])
    stdout = capsys.readouterr().out
    report = json.loads(stdout[stdout.index("{"):])
    assert report["values"]["fid"] == pytest.approx(best_row["val/fid"], rel=1e-5)
    assert report["values"]["kid"] == pytest.approx(best_row["val/kid"], rel=1e-5)
    assert report["generator_steps"] == best_row["generator_steps"] and report["num_samples"] == 40
    assert report["protocol"]["features"] == best_row["protocol"]["features"] and report["real_split"] == "val"
    assert report["parzen"]["num_val"] == 10 and report["parzen"]["num_test"] == 30
    coverage = report["class_coverage"]  # the classifier's classes of the 40 samples and of the 40 held-out images
    assert sum(coverage["fake_shares"]) == pytest.approx(1, abs=1e-3) and len(coverage["real_shares"]) == 10
    assert 1 <= coverage["classes_covered"] <= 10
    written = list((run / "checkpoints").glob("best.eval-fid-kid-parzen-classes-40*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text()) == report


@pytest.mark.e2e
def test_train_stops_before_training_when_inception_weights_are_missing(tmp_path: Path):
    folder = write_image_folder(tmp_path / "images", n=20)
    flags = [f for f in FAST if f != "metrics=none"]
    result = run_cli("data=anime", f"data.root={folder}", "metrics.inception_weights=/nowhere/inception.pth",
                     f"hydra.run.dir={tmp_path}/run", *flags, cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "metrics.inception_weights=/nowhere/inception.pth: no such file" in result.stderr
    assert "Training" not in result.stderr and not list((tmp_path / "run").glob("**/*.ckpt"))
