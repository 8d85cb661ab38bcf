"""Class-conditional GANs: the label really conditions G and D, parameter shapes follow the class count, the GAN
algorithm passes labels everywhere (gradient penalty included), one-row-per-class grids, ACGAN's class loss, class
accuracy and intra-FID, and the CLI end to end (train, sample class=N) on tiny generated MNIST."""

import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    FAST,
    compose_train,
    fit,
    train_in_process,
    training_loader,
    untrained_classifier,
    write_class_folders,
)
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ganx.data import ImageFolderDataModule
from ganx.errors import ConfigError
from ganx.evaluate import EvaluateConfig, evaluate
from ganx.losses import AdversarialLoss
from ganx.metrics.conditional import ClassConditionalMetrics, class_metrics_for
from ganx.metrics.extractors.base import MetricsSetupError
from ganx.metrics.extractors.classifier import ClassifierFeatures
from ganx.metrics.resize import RESIZE_MODES, clean_resize
from ganx.models.conditional import ACGAN, ConditionalGAN
from ganx.nets import DCGANDiscriminator
from ganx.nets.conditional import (
    AuxiliaryClassifierDiscriminator,
    ConditionalBatchNorm,
    ConditionalDCGANDiscriminator,
    ConditionalDCGANGenerator,
)
from ganx.preflight import check_model_data_pairing
from ganx.sample import main as sample_main

K = 10
ADAM = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))


def generator(conditioning: str = "batchnorm", **kwargs) -> ConditionalDCGANGenerator:
    return ConditionalDCGANGenerator(K, latent_dim=8, image_size=28, channels=1, base_width=8, conditioning=conditioning,
                                     **kwargs)


def discriminator(conditioning: str = "projection", norm: str = "batch") -> ConditionalDCGANDiscriminator:
    return ConditionalDCGANDiscriminator(K, image_size=28, channels=1, base_width=8, norm=norm, conditioning=conditioning)


def tiny_cgan(loss: AdversarialLoss | None = None, model_cls=ConditionalGAN, disc: nn.Module | None = None,
              gen: nn.Module | None = None, **kwargs) -> ConditionalGAN:
    return model_cls(gen or generator(), disc or discriminator(), loss or AdversarialLoss("non_saturating"), ADAM, ADAM,
                     num_classes=K, latent_dim=8, num_fixed_samples=3, **kwargs)


def labeled_images(model: ConditionalGAN, n: int = 64, batch_size: int = 8) -> DataLoader:
    """Training batches of random images labeled 0, 1, ..., K - 1 in turn."""
    return training_loader(model, TensorDataset(torch.rand(n, 1, 28, 28) * 2 - 1, torch.arange(n) % K), batch_size)


# --- networks --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("conditioning", ["batchnorm", "concat"])
def test_with_fixed_noise_the_label_changes_the_generated_image(conditioning):
    torch.manual_seed(0)
    net = generator(conditioning).eval()
    z = torch.randn(1, 8).expand(K, -1)
    images = net(z, torch.arange(K))
    assert images.shape == (K, 1, 28, 28)
    same_label = net(z[:2], torch.tensor([3, 3]))
    noise = (same_label[0] - same_label[1]).abs().max()  # float round-off between rows of one batch
    distances = torch.cdist(images.flatten(1), images.flatten(1)) + torch.eye(K) * 1e9
    assert distances.min() > 1000 * noise + 1e-6  # ten labels, ten different images from one code


def test_conditional_batchnorm_scales_and_shifts_by_class():
    norm = ConditionalBatchNorm(2, num_classes=3).eval()  # eval: running mean 0, variance 1
    scale = torch.tensor([[1.0, 1.0], [2.0, 3.0], [0.0, 1.0]])
    shift = torch.tensor([[0.0, 0.0], [1.0, -1.0], [5.0, 0.0]])
    with torch.no_grad():
        norm.scale.weight.copy_(scale)
        norm.shift.weight.copy_(shift)
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])
    labels = torch.tensor([0, 1, 2])
    normalised = x / (1 + norm.norm.eps) ** 0.5
    expected = scale[labels] * normalised + shift[labels]  # rows: [1, 2], [3, 5], [5, 2] up to eps
    assert torch.allclose(norm(x.view(3, 2, 1, 1), labels).view(3, 2), expected)
    assert torch.allclose(expected, torch.tensor([[1.0, 2.0], [3.0, 5.0], [5.0, 2.0]]), atol=1e-4)


def test_projection_discriminator_is_psi_plus_the_class_embedding_dotted_with_the_features():
    torch.manual_seed(0)
    net = discriminator("projection", norm="none")
    x = torch.randn(4, 1, 28, 28)
    phi = net.trunk(x).flatten(1)
    psi = net.head(net.trunk(x)).flatten()
    labels = torch.tensor([0, 3, 3, 9])
    expected = psi + (net.projection.weight[labels] * phi).sum(1)
    assert torch.allclose(net(x, labels), expected, atol=1e-6)
    # The same images scored as other classes get other scores: the output depends on the label.
    assert not torch.allclose(net(x, labels), net(x, (labels + 1) % K))
    with torch.no_grad():
        net.projection.weight.zero_()
    assert torch.allclose(net(x, labels), net(x, (labels + 1) % K))  # without V only psi(phi(x)) is left


def test_concat_discriminator_sees_one_hot_label_channels():
    torch.manual_seed(0)
    net = discriminator("concat", norm="none")
    x = torch.randn(4, 1, 28, 28)
    assert not torch.allclose(net(x, torch.zeros(4, dtype=torch.long)), net(x, torch.ones(4, dtype=torch.long)))
    # Equivalent to the plain trunk on [image, one-hot maps]:
    maps = F.one_hot(torch.tensor([2, 2, 2, 2]), K).float()[:, :, None, None].expand(-1, -1, 28, 28)
    manual = net.head(net.trunk(torch.cat([x, maps], 1))).flatten()
    assert torch.allclose(net(x, torch.full((4,), 2)), manual)


@pytest.mark.parametrize("num_classes", [3, 10])
def test_parameter_shapes_follow_the_number_of_classes(num_classes):
    g_bn = ConditionalDCGANGenerator(num_classes, latent_dim=8, image_size=28, channels=1, base_width=8)
    assert {tuple(m.scale.weight.shape)[0] for m in g_bn.modules() if isinstance(m, ConditionalBatchNorm)} == {num_classes}
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) and m.affine for m in g_bn.modules())
    g_cat = ConditionalDCGANGenerator(num_classes, latent_dim=8, image_size=28, channels=1, base_width=8,
                                      conditioning="concat", embedding_dim=5)
    assert g_cat.embedding.weight.shape == (num_classes, 5) and g_cat.backbone.project[0].in_features == 8 + 5
    d_proj = ConditionalDCGANDiscriminator(num_classes, image_size=28, channels=1, base_width=8)
    # DCGAN at 28x28: two stride-2 convs to 16 channels at 7x7, flattened: one 784-d embedding row per class
    assert d_proj.projection.weight.shape == (num_classes, 16 * 7 * 7)
    d_cat = ConditionalDCGANDiscriminator(num_classes, image_size=28, channels=1, base_width=8, conditioning="concat")
    assert d_cat.trunk[0].in_channels == 1 + num_classes
    acgan_d = AuxiliaryClassifierDiscriminator(num_classes, image_size=28, channels=1, base_width=8)
    x = torch.randn(2, 1, 28, 28)
    assert acgan_d(x).shape == (2,) and acgan_d.classify(x).shape == (2, num_classes)


def test_the_conditional_nets_keep_the_dcgan_architecture():
    plain = DCGANDiscriminator(28, 1, 8)
    conditional = discriminator("projection")
    plain_shapes = [p.shape for p in plain.parameters()]
    assert [p.shape for n, p in conditional.named_parameters() if not n.startswith("projection")] == plain_shapes


def test_bad_conditioning_names_the_choices():
    with pytest.raises(ValueError, match="projection, concat; got 'film'"):
        ConditionalDCGANDiscriminator(K, image_size=28, channels=1, conditioning="film")
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        ConditionalDCGANGenerator(1, image_size=28, channels=1)


# --- the algorithm ---------------------------------------------------------------------------------------------------


def test_unconditional_nets_and_class_count_mismatches_are_refused():
    from ganx.nets import DCGANGenerator

    with pytest.raises(ValueError, match="model.generator \\(DCGANGenerator\\) is built for num_classes=None"):
        tiny_cgan(gen=DCGANGenerator(8, 28, 1, 8))
    with pytest.raises(ValueError, match="num_classes=3, but model.num_classes=10"):
        tiny_cgan(disc=ConditionalDCGANDiscriminator(3, image_size=28, channels=1, base_width=8))
    with pytest.raises(ValueError, match="class head"):
        tiny_cgan(model_cls=ACGAN, gen=generator("concat"))


@pytest.mark.parametrize("gp_batch_shrink", [1, 3])
def test_the_critic_and_the_gradient_penalty_see_the_real_minibatch_labels(monkeypatch, gp_batch_shrink):
    loss = AdversarialLoss("wasserstein", gp_weight=10.0, gp_batch_shrink=gp_batch_shrink)
    model = tiny_cgan(loss, disc=discriminator(norm="layer"), critic_steps=2)
    calls: list[tuple[bool, list[int]]] = []
    forward = model.discriminator.forward

    def spy(images, labels):
        calls.append((images.requires_grad, labels.tolist()))
        return forward(images, labels)

    monkeypatch.setattr(model.discriminator, "forward", spy)
    fit(model, 1, labeled_images(model))
    # Per critic step: D(real, y), D(fake, y), D(x_hat, y) for the penalty (x_hat requires grad); then D(G(z, y), y).
    assert len(calls) == 2 * 3 + 1
    first_batch = calls[0][1]
    # the penalty's interpolates: the first ceil(N / gp_batch_shrink) pairs, with their labels
    assert calls[1][1] == first_batch and calls[2] == (True, first_batch[:-(-len(first_batch) // gp_batch_shrink)])
    assert sorted(calls[0][1] + calls[3][1]) == sorted(list(range(K)) + list(range(6)))  # 16 labels of one batch


@pytest.mark.parametrize("loss", [
    AdversarialLoss("minimax"), AdversarialLoss("hinge"), AdversarialLoss("lsgan"),
    AdversarialLoss("wasserstein", clip_value=0.01), AdversarialLoss("non_saturating", r1_weight=1.0),
])
def test_every_loss_of_the_family_trains(loss):
    model = tiny_cgan(loss, disc=discriminator(norm="none"))
    fit(model, 2, labeled_images(model))
    assert model.generator_steps == 2


def test_acgan_adds_the_class_cross_entropy_to_both_losses():
    torch.manual_seed(0)
    model = tiny_cgan(model_cls=ACGAN, gen=generator("concat"),
                      disc=AuxiliaryClassifierDiscriminator(K, image_size=28, channels=1, base_width=8, norm="none"),
                      class_weight=0.5)
    real, fake, labels = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28), torch.tensor([1, 2, 3, 4])
    classify = model.discriminator.classify
    expected_d = 0.5 * (F.cross_entropy(classify(real), labels) + F.cross_entropy(classify(fake), labels))
    assert torch.allclose(model.auxiliary_d_loss(real, fake, labels), expected_d)
    assert torch.allclose(model.auxiliary_g_loss(fake, labels), 0.5 * F.cross_entropy(classify(fake), labels))
    # The source logits do not depend on the label: ACGAN's critic never sees it.
    assert torch.equal(model.critic(real, labels), model.critic(real, labels.flip(0)))
    fit(model, 2, labeled_images(model))
    assert model.generator_steps == 2


def test_sample_grid_has_one_row_per_class_from_the_same_codes():
    class LabelPainter(nn.Module):
        """G(z, y) = an image filled with y + z[0] / 1000: rows and columns are recoverable from the pixels."""

        num_classes = K

        def forward(self, z, labels):
            return (labels.float() + z[:, 0] / 1000).view(-1, 1, 1, 1).expand(-1, 1, 28, 28)

    model = tiny_cgan(gen=LabelPainter())
    images = model.class_grid(model.fixed_noise)
    values = images[:, 0, 0, 0].view(K, 3)
    assert torch.allclose(values.round(), torch.arange(K).float().view(K, 1).expand(K, 3))
    assert torch.allclose(values - values.round(), (model.fixed_noise[:, 0] / 1000).expand(K, 3), atol=1e-6)
    grid = model.visualize()
    assert grid.shape == (3, 2 + K * 30, 2 + 3 * 30)


def test_metrics_fakes_have_the_labels_of_the_real_batch():
    model = tiny_cgan()
    real, labels = torch.rand(5, 1, 28, 28), torch.tensor([4, 4, 0, 9, 1])
    seen = {}

    def record(z, classes):
        seen["labels"] = classes
        return torch.zeros(len(z), 1, 28, 28)

    model.generate = record
    out_real, fake = model.generate_for_metrics((real, labels), 0)
    assert out_real is real and fake.shape == real.shape and torch.equal(seen["labels"], labels)


def test_unlabeled_data_is_refused_before_training(image_folder: Path):
    data = ImageFolderDataModule(image_folder, image_size=28, batch_size=4, val_size=4)
    model = tiny_cgan()
    with pytest.raises(ValueError, match="num_classes=10, but ImageFolderDataModule is unlabeled.*data=mnist"):
        fit(model, 1, datamodule=data, limit_val_batches=0)
    assert model.generator_steps == 0


# --- class accuracy and intra-FID ------------------------------------------------------------------------------------


@pytest.fixture
def classifier_features(tmp_path: Path) -> ClassifierFeatures:
    return ClassifierFeatures(untrained_classifier(tmp_path / "classifier.pt"))


def test_class_accuracy_counts_samples_the_classifier_puts_in_their_class(classifier_features):
    torch.manual_seed(1)
    images = torch.rand(40, 1, 28, 28) * 2 - 1
    predicted = classifier_features(images)[:, classifier_features.pool_dim:].argmax(1)
    labels = predicted.clone()
    labels[::2] = (predicted[::2] + 1) % K  # every other sample is "meant" as another class: exactly half are right
    metrics = ClassConditionalMetrics(classifier_features, K)
    metrics.update(images, images, labels)
    values = metrics.compute()
    assert values["class_accuracy"] == pytest.approx(0.5)
    for c in range(K):
        members = labels == c
        if members.any():
            hand = float((predicted[members] == c).float().mean())
            assert values[f"class_accuracy/{c}"] == pytest.approx(hand)


def test_intra_fid_is_zero_for_generated_images_equal_to_the_real_ones_and_nan_for_empty_classes(classifier_features):
    torch.manual_seed(2)
    images = torch.rand(30, 1, 28, 28) * 2 - 1
    labels = torch.arange(30) % 3  # classes 0..2 only, 10 images each
    metrics = ClassConditionalMetrics(classifier_features, K)
    metrics.update(images, images, labels)
    values = metrics.compute()
    assert all(abs(values[f"intra_fid/{c}"]) < 1e-3 for c in range(3))
    assert all(np.isnan(values[f"intra_fid/{c}"]) for c in range(3, K))
    assert abs(values["intra_fid"]) < 1e-3 and values["intra_fid_min_images"] == 0
    # A second evaluation keeps the real statistics and replaces the generated ones.
    metrics.reset()
    metrics.update(None, images.flip(-1) * 0.2, labels)
    assert metrics.compute()["intra_fid"] > 1e-3


def test_class_metrics_resize_images_like_the_image_metrics(classifier_features):
    # 56x56 images, and as "real" their clean (PIL bicubic) resize to the classifier's 28x28. With resize=clean the
    # generated side goes through that same resize, so each class's intra-FID is ~0; the legacy (bilinear) resize
    # gives other features, so ignoring metrics.resize=clean would show here.
    torch.manual_seed(3)
    large = torch.rand(30, 1, 56, 56) * 2 - 1
    labels = torch.arange(30) % 3
    intra_fid = {}
    for resize in RESIZE_MODES:
        metrics = class_metrics_for(classifier_features, K, resize)
        metrics.update(clean_resize(large, classifier_features.input_size), large, labels)
        intra_fid[resize] = metrics.compute()["intra_fid"]
    assert abs(intra_fid["clean"]) < 1e-3 < intra_fid["legacy"]
    with pytest.raises(MetricsSetupError, match="metrics.resize must be one of"):
        ClassConditionalMetrics(classifier_features, K, "bicubic")


def test_class_metrics_need_a_classifier_of_the_classes(classifier_features):
    with pytest.raises(ValueError, match="classifier of the 5 data classes"):
        ClassConditionalMetrics(classifier_features, 5)


# --- end to end ------------------------------------------------------------------------------------------------------

TINY_NETS = ["model.generator.base_width=8", "model.discriminator.base_width=8", "data.batch_size=16"]


@pytest.mark.e2e
def test_train_cgan_with_class_metrics_then_sample_a_class_and_a_class_grid(mnist_dir: Path, tmp_path: Path):
    run, classifier = tmp_path / "run", untrained_classifier(tmp_path / "classifier.pt")
    train_in_process("model=cgan", "data=mnist", f"data.data_dir={mnist_dir}", "data.val_size=64", *TINY_NETS, *FAST,
                     "metrics=default", "metrics.names=[fid]", f"metrics.classifier_ckpt={classifier}",
                     "metrics.allow_small_fid=true", "steps=3", "eval_every=3", "sample_every=3", "checkpoint_every=3",
                     f"hydra.run.dir={run}", cwd=tmp_path)  # the CLI's process: test_train_cli
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["generator_steps"] == 3 and "val/fid" in rows[0]
    assert 0.0 <= rows[0]["val/class_accuracy"] <= 1.0
    assert {f"val/class_accuracy/{c}" for c in range(K)} <= rows[0].keys()
    grid = Image.open(run / "samples" / "step_0000003.png")
    assert grid.size == (2 + 10 * 30, 2 + K * 30)  # 10 fixed codes per row, one row per class

    # Sampling and evaluation in-process: the CLI plumbing is covered by the other commands' tests.
    ckpt = run / "checkpoints" / "last.ckpt"
    sample_main([f"ckpt={ckpt}", "n=4", f"out={tmp_path / 'grid.png'}"])
    assert Image.open(tmp_path / "grid.png").size == (2 + 4 * 30, 2 + K * 30)  # 4 per class, one row per class
    sample_main([f"ckpt={ckpt}", "class=3", "n=5", f"out={tmp_path / 'three.npz'}"])
    saved = np.load(tmp_path / "three.npz")
    assert saved["images"].shape == (5, 1, 28, 28) and saved["labels"].tolist() == [3] * 5
    with pytest.raises(SystemExit, match="class=10 is not a class of this model: choose 0..9"):
        sample_main([f"ckpt={ckpt}", "class=10"])
    result = evaluate(EvaluateConfig(ckpt=str(ckpt), num_samples=64, metrics=["fid"], classifier_ckpt=str(classifier),
                                     allow_small_fid=True))
    assert 0.0 <= result["class_metrics"]["class_accuracy"] <= 1.0 and "intra_fid/9" in result["class_metrics"]


@pytest.mark.e2e
def test_acgan_with_a_gradient_penalty_trains_from_the_cli(mnist_dir: Path, tmp_path: Path):
    run = tmp_path / "run"
    train_in_process("model=acgan", "loss=wasserstein_gp", "model.discriminator.norm=layer", "data=mnist",
                     f"data.data_dir={mnist_dir}", *TINY_NETS, *FAST, "steps=2", f"hydra.run.dir={run}", cwd=tmp_path)
    header, *rows = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert "train/d_auxiliary" in header and "train/gradient_penalty" in header and "train/g_auxiliary" in header


FOLDER = ["data=anime", "data.labels=folders", "data.image_size=16", "data.num_workers=0", "data.val_size=3"]


@pytest.mark.e2e
def test_cgan_trains_on_class_subfolders_and_samples_a_class_by_name(tmp_path: Path):
    root, run = write_class_folders(tmp_path / "pets"), tmp_path / "run"
    train_in_process("model=cgan", *FOLDER, f"data.root={root}", *TINY_NETS, *FAST, "steps=2", f"hydra.run.dir={run}",
                     cwd=tmp_path)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert checkpoint["ganx"]["config"]["data"]["classes"] == ["cat", "dog", "fox"]
    assert checkpoint["ganx"]["config"]["model"]["num_classes"] == 3
    assert json.loads((run / "run.json").read_text())["data"]["classes"] == ["cat", "dog", "fox"]
    ckpt = run / "checkpoints" / "last.ckpt"
    sample_main([f"ckpt={ckpt}", "class=fox", "n=4", f"out={tmp_path / 'fox.npz'}"])
    assert np.load(tmp_path / "fox.npz")["labels"].tolist() == [2] * 4
    sample_main([f"ckpt={ckpt}", "class=1", "n=2", f"out={tmp_path / 'dog.npz'}"])
    assert np.load(tmp_path / "dog.npz")["labels"].tolist() == [1] * 2
    with pytest.raises(SystemExit, match="class=owl is not a class of this model: choose 0..2, or a class name: cat, "
                                         "dog, fox"):
        sample_main([f"ckpt={ckpt}", "class=owl"])


@pytest.mark.parametrize("classes", [("cat",), ()])
def test_a_conditional_model_refuses_a_folder_of_fewer_than_two_classes(tmp_path: Path, classes):
    root = write_class_folders(tmp_path / "pets", classes=classes, per_class=2)
    root.mkdir(exist_ok=True)
    Image.new("RGB", (16, 16)).save(root / "loose.png")  # an image outside class folders makes no class
    cfg = compose_train("model=acgan", *FOLDER, f"data.root={root}")
    found = "1 (cat)" if classes else "none"
    with pytest.raises(ConfigError, match=rf"model=acgan is class-conditional and needs at least 2 classes .* found "
                                          rf"{re.escape(found)}\. Put each class's images in its own subfolder"):
        check_model_data_pairing(cfg, {"model": "acgan", "data": "anime"})
    cfg = compose_train("model=dcgan", *FOLDER, f"data.root={root}")  # an unconditional model reads the folder
    check_model_data_pairing(cfg, {"model": "dcgan", "data": "anime"})
