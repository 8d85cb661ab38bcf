"""ganx.evaluate refuses what it cannot evaluate honestly: data of another image size or channel count than the
checkpoint's, FID on fewer images than feature dimensions (also refused before training, by the metrics callback)."""

import pytest
from helpers import fit, write_ganx_checkpoint
from omegaconf import OmegaConf

from ganx.metrics.evaluations import EVALUATIONS_FILE
from ganx.models import GAN


def test_evaluate_refuses_data_of_another_image_size_or_channel_count(mnist_dir, tmp_path):
    from ganx.evaluate import main as evaluate_main
    from ganx.presets import compose_data_config

    data_32 = OmegaConf.to_container(compose_data_config("mnist", [f"data.data_dir={mnist_dir}", "data.image_size=32"]))
    ckpt = write_ganx_checkpoint(tmp_path / "gan.ckpt", {}, {}, data_32)
    with pytest.raises(SystemExit, match=r"trained on 1x32x32 images .* yield 1x28x28 images.*"
                                         r"Evaluate with data.image_size=32 \(the images are resized to it\), or leave out data="):
        evaluate_main([f"ckpt={ckpt}", "num_samples=16", "data.image_size=28"])
    with pytest.raises(SystemExit, match=r"trained on 1x32x32 .* \(ImageFolderDataModule\) yield 3x64x64 images.*"
                                         r"Evaluate with data.image_size=32 .* and a data config of 1-channel images"):
        evaluate_main([f"ckpt={ckpt}", "num_samples=16", "data=anime", f"data.root={tmp_path}"])


# --- FID needs at least as many images as feature dimensions -------------------------------------------------------------


def test_fid_on_fewer_held_out_images_than_feature_dimensions_is_refused_before_training(mnist_dir, tmp_path):
    from helpers import ProjectionFeatures, tiny_gan_28

    from ganx.data import MNISTDataModule
    from ganx.metrics import ImageMetrics, ImageMetricsCallback, MetricsSetupError

    def fit_with_fid(allow_small_fid: bool) -> GAN:
        model = tiny_gan_28()
        metrics = ImageMetrics(ProjectionFeatures(784, pool_dim=32), names=["fid"])
        callback = ImageMetricsCallback(metrics, tmp_path / EVALUATIONS_FILE, allow_small_fid=allow_small_fid)
        fit(model, 1, datamodule=MNISTDataModule(data_dir=mnist_dir, batch_size=16, val_size=16), callbacks=[callback])
        return model

    with pytest.raises(MetricsSetupError, match=r"FID on 32-dimensional features \(projection\) needs at least 32 real "
                                                r"and as many generated images, but the held-out split holds 16 .*"
                                                r"metrics.allow_small_fid=true"):
        fit_with_fid(allow_small_fid=False)
    assert not (tmp_path / EVALUATIONS_FILE).exists()
    assert fit_with_fid(allow_small_fid=True).generator_steps == 1
    assert len((tmp_path / EVALUATIONS_FILE).read_text().splitlines()) == 1


def test_evaluate_refuses_fid_on_fewer_samples_than_feature_dimensions(mnist_dir, tmp_path):
    from helpers import untrained_classifier

    from ganx.evaluate import EvaluateConfig, evaluate
    from ganx.metrics import MetricsSetupError
    from ganx.presets import compose_data_config

    data = OmegaConf.to_container(compose_data_config("mnist", [f"data.data_dir={mnist_dir}"]))
    ckpt = write_ganx_checkpoint(tmp_path / "gan.ckpt", {}, {}, data)
    classifier = untrained_classifier(tmp_path / "classifier.pt")  # 128 features
    with pytest.raises(MetricsSetupError, match=r"needs at least 128 .* but num_samples=64: .* Pass num_samples=128 "
                                                r"or more, metrics=\[kid,is\] .* allow_small_fid=true"):
        evaluate(EvaluateConfig(ckpt=str(ckpt), num_samples=64, metrics=["fid"], classifier_ckpt=str(classifier)))
