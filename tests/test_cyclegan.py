"""CycleGAN: networks against the official parameter counts, replay buffer, unaligned data, LR schedule, training step,
translation, download, and the CLI end to end on a tiny generated A/B folder."""

import csv
import io
import shutil
import zipfile
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import FAST, cli_in_process, fit, train_in_process, write_cyclegan_checkpoint
from PIL import Image
from scipy.stats import chi2_contingency, chisquare
from torch.utils.data import DataLoader, TensorDataset

from ganx.data import DataError, UnpairedDataModule
from ganx.data.download import download_cyclegan
from ganx.losses import AdversarialLoss
from ganx.models import CycleGAN
from ganx.models.cyclegan import ConstantThenLinearDecay
from ganx.models.replay_buffer import ReplayBuffer
from ganx.nets import PatchGANDiscriminator, ResnetGenerator
from ganx.translate import main as translate_main
from ganx.translate import translate_image


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def tiny_cyclegan(loss: AdversarialLoss | None = None, **kwargs) -> CycleGAN:
    return CycleGAN(
        generator_ab=ResnetGenerator(ngf=4, n_blocks=1),
        generator_ba=ResnetGenerator(ngf=4, n_blocks=1),
        discriminator_a=PatchGANDiscriminator(ndf=4),
        discriminator_b=PatchGANDiscriminator(ndf=4),
        loss=loss or AdversarialLoss("lsgan"),
        g_optimizer=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
        d_optimizer=partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999)),
        **kwargs,
    )


def random_images_ab(n_images: int = 4, size: int = 32, batch_size: int = 1) -> DataLoader:
    """Training batches of random (real_a, real_b) images."""
    data = TensorDataset(torch.rand(n_images, 3, size, size) * 2 - 1, torch.rand(n_images, 3, size, size) * 2 - 1)
    return DataLoader(data, batch_size=batch_size)


# --- networks --------------------------------------------------------------------------------------------------------


def test_parameter_counts_equal_the_official_resnet_9blocks_and_basic_discriminator():
    # pytorch-CycleGAN-and-pix2pix prints 11.378 M (G) and 2.765 M (D); exact sums of the conv weights + biases:
    # G = 3*64*49+64 + 64*128*9+128 + 128*256*9+256 + 9*2*(256*256*9+256) + 256*128*9+128 + 128*64*9+64 + 64*3*49+3
    assert n_params(ResnetGenerator(ngf=64, n_blocks=9)) == 11_378_179
    # D = 3*64*16+64 + 64*128*16+128 + 128*256*16+256 + 256*512*16+512 + 512*16+1
    assert n_params(PatchGANDiscriminator(ndf=64, n_layers=3)) == 2_764_737


@pytest.mark.parametrize("height,width", [(16, 16), (20, 36), (32, 24), (64, 64)])
def test_generator_output_has_the_input_shape(height, width):
    x = torch.rand(2, 3, height, width) * 2 - 1
    y = ResnetGenerator(ngf=4, n_blocks=2)(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1  # tanh output


def test_generator_names_the_size_it_cannot_keep():
    with pytest.raises(ValueError, match="18x16.*multiples of 4"):
        ResnetGenerator(ngf=4, n_blocks=1)(torch.zeros(1, 3, 18, 16))


@pytest.mark.parametrize("size,grid", [(256, 30), (128, 14), (64, 6), (24, 1)])
def test_patchgan_outputs_a_grid_of_logits(size, grid):
    assert PatchGANDiscriminator(ndf=4)(torch.zeros(2, 3, size, size)).shape == (2, 1, grid, grid)


def test_patchgan_names_the_smallest_input():
    with pytest.raises(ValueError, match="23x23; with n_layers=3 it needs at least 24x24"):
        PatchGANDiscriminator(ndf=4)(torch.zeros(1, 3, 23, 23))


def test_patchgan_receptive_field_is_70_pixels():
    net = PatchGANDiscriminator(ndf=4, norm="none")  # InstanceNorm statistics would couple every pixel
    x = torch.randn(1, 3, 160, 160, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[-2] // 2, out.shape[-1] // 2].backward()
    rows = x.grad.abs().sum(dim=(0, 1, 3)).nonzero().flatten()
    cols = x.grad.abs().sum(dim=(0, 1, 2)).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


# --- replay buffer ---------------------------------------------------------------------------------------------------


def ids(images: torch.Tensor) -> list[int]:
    """Images filled with their id: recover the ids."""
    return images[:, 0, 0, 0].round().long().tolist()


def images_with_ids(start: int, n: int) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()


def test_replay_buffer_returns_the_new_images_while_filling():
    buffer = ReplayBuffer(capacity=5)
    assert ids(buffer(images_with_ids(0, 3))) == [0, 1, 2]
    assert ids(buffer(images_with_ids(3, 2))) == [3, 4]
    assert len(buffer) == 5 and ids(buffer.images) == [0, 1, 2, 3, 4]


def test_full_replay_buffer_returns_a_stored_image_with_probability_one_half():
    torch.manual_seed(0)
    buffer = ReplayBuffer(capacity=50)
    buffer(images_with_ids(0, 50))
    stored, replayed, n = set(range(50)), 0, 2000
    for new_id in range(1000, 1000 + n):
        before = ids(buffer.images)
        (returned,) = ids(buffer(images_with_ids(new_id, 1)))
        after = ids(buffer.images)
        if returned == new_id:
            assert after == before  # returned as is, not stored
        else:
            replayed += 1
            assert returned in stored  # an image that was in the buffer ...
            slot = before.index(returned)
            assert after[slot] == new_id and sum(a != b for a, b in zip(before, after, strict=True)) == 1  # ... swapped for the new
            stored = (stored - {returned}) | {new_id}
    # Binomial(2000, 1/2): standard deviation 22.4; 4 sigma.
    assert abs(replayed - n / 2) < 4 * (n / 4) ** 0.5


def test_replay_buffer_of_size_zero_passes_images_through():
    images = torch.rand(3, 3, 4, 4)
    assert torch.equal(ReplayBuffer(capacity=0)(images), images)


def test_replay_buffers_round_trip_through_a_weights_only_checkpoint(tmp_path: Path):
    model = tiny_cyclegan(replay_buffer_size=3)
    model.fake_a_buffer(torch.rand(2, 3, 8, 8))
    model.fake_b_buffer(torch.rand(5, 3, 8, 8))
    torch.save({"state_dict": model.state_dict()}, tmp_path / "m.ckpt")
    restored = tiny_cyclegan(replay_buffer_size=3)
    restored.load_state_dict(torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"])
    assert torch.equal(restored.fake_a_buffer.images, model.fake_a_buffer.images) and len(restored.fake_a_buffer) == 2
    assert torch.equal(restored.fake_b_buffer.images, model.fake_b_buffer.images) and len(restored.fake_b_buffer) == 3


# --- unpaired data ---------------------------------------------------------------------------------------------------


def gray(level: int, size: int, mode: str = "RGB") -> Image.Image:
    return Image.new("RGB", (size, size), (level, level, level)).convert(mode)


def write_unpaired(root: Path, n: dict[str, int], size: int = 12) -> Path:
    """Solid-gray images; image j of a domain has level 20 + 30 j, so batches reveal which file they came from."""
    for domain, count in n.items():
        (root / domain).mkdir(parents=True, exist_ok=True)
        for j in range(count):
            gray(20 + 30 * j, size).save(root / domain / f"{domain}_{j}.png")
    return root


def file_index(image: torch.Tensor) -> int:
    return round(((image.mean().item() + 1) / 2 * 255 - 20) / 30)


def unpaired(root: Path, **kwargs) -> UnpairedDataModule:
    kwargs = {"load_size": 12, "image_size": 8, "batch_size": 2, **kwargs}
    data = UnpairedDataModule(root, **kwargs)
    data.setup("fit")
    return data


def test_unaligned_pairs_draw_b_independently_of_a(tmp_path: Path):
    data = unpaired(write_unpaired(tmp_path, {"trainA": 3, "trainB": 7, "testA": 1, "testB": 1}))
    assert len(data.train_set) == 7  # an epoch follows the larger domain
    torch.manual_seed(0)
    table = np.zeros((3, 7))
    for _ in range(60):
        for i in range(len(data.train_set)):
            a, b = data.train_set[i]
            assert file_index(a) == i % 3
            table[file_index(a), file_index(b)] += 1
    assert chisquare(table.sum(axis=0)).pvalue > 1e-3  # B uniform over its 7 files ...
    assert chi2_contingency(table).pvalue > 1e-3  # ... whatever the A image (index-aligned B would give p ~ 0)


def test_train_crops_and_test_resizes_to_image_size(tmp_path: Path):
    data = unpaired(write_unpaired(tmp_path, {"trainA": 2, "trainB": 2, "testA": 3, "testB": 2}, size=20))
    a, b = next(iter(data.train_dataloader()))
    assert a.shape == b.shape == (2, 3, 8, 8)
    assert len(data.val_set) == 3
    pairs = [data.val_set[i] for i in range(3)]
    assert [(file_index(a), file_index(b)) for a, b in pairs] == [(0, 0), (1, 1), (2, 0)]  # deterministic test pairs
    assert pairs[0][0].shape == (3, 8, 8)


def test_grayscale_palette_and_transparent_images_become_rgb(tmp_path: Path):
    root = write_unpaired(tmp_path, {"trainB": 1, "testA": 1, "testB": 1})
    (root / "trainA").mkdir()
    gray(80, 12, "L").save(root / "trainA" / "l.png")
    gray(80, 12, "P").save(root / "trainA" / "p.png")
    Image.new("RGBA", (12, 12), (0, 0, 0, 0)).save(root / "trainA" / "transparent.png")
    data = unpaired(root)
    images = [data.train_set[i][0] for i in range(3)]
    assert all(image.shape == (3, 8, 8) for image in images)
    assert torch.allclose(images[2], torch.ones(3, 8, 8))  # transparent -> white, as in training folders


def test_missing_domain_folder_names_the_layout(tmp_path: Path):
    root = write_unpaired(tmp_path, {"trainA": 1, "trainB": 1, "testA": 1})
    with pytest.raises(DataError, match=r"testB not found.*trainA,trainB,testA,testB"):
        unpaired(root)
    with pytest.raises(DataError, match="load_size=32 is smaller than data.image_size=64"):
        UnpairedDataModule(root, load_size=32, image_size=64)


# --- training --------------------------------------------------------------------------------------------------------


def test_lr_factor_is_constant_then_linear_towards_zero():
    factor = ConstantThenLinearDecay(n_epochs=3, n_epochs_decay=4)
    assert [factor(e) for e in range(7)] == pytest.approx([1, 1, 1, 0.8, 0.6, 0.4, 0.2])


def test_lr_schedule_steps_once_per_epoch_for_both_optimizers():
    seen: list[tuple[float, float]] = []

    class RecordLR(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            g_opt, d_opt = pl_module.optimizers()
            seen.append((g_opt.param_groups[0]["lr"], d_opt.param_groups[0]["lr"]))

    model = tiny_cyclegan(n_epochs=1, n_epochs_decay=2)
    fit(model, 6, random_images_ab(n_images=2), callbacks=[RecordLR()])  # 2 batches per epoch: 3 epochs
    assert [g for g, _ in seen] == [d for _, d in seen] == pytest.approx([2e-4, 2e-4 * 2 / 3, 2e-4 / 3])


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("lambda_identity,passes_per_step", [(0.5, 3), (0.0, 2)])
def test_step_counts_and_identity_passes(lambda_identity, passes_per_step):
    model = tiny_cyclegan(lambda_identity=lambda_identity)
    g_ab_calls, d_b_calls = count_calls(model.generator_ab), count_calls(model.discriminator_b)
    trainer = fit(model, 3, random_images_ab())
    assert model.generator_steps == 3 and trainer.global_step == 6
    g_opt, d_opt = model.optimizers()
    assert {int(s["step"]) for s in g_opt.optimizer.state.values()} == {3}
    assert {int(s["step"]) for s in d_opt.optimizer.state.values()} == {3}
    # G_AB: translate A, reconstruct B (+ identity on B); D_B: the generator's fake, then real and buffered fake.
    assert g_ab_calls[0] == 3 * passes_per_step
    assert d_b_calls[0] == 3 * 3
    assert len(model.fake_a_buffer) == len(model.fake_b_buffer) == 3


def test_visualize_shows_two_triples_per_test_pair():
    model = tiny_cyclegan(num_visual=2)
    fit(model, 1, random_images_ab(batch_size=3))  # without a data module: the first training batch's first pairs
    grid = model.visualize()
    # make_grid: 2 px padding around 32 px images; an 8 px white gap between the A and B blocks.
    assert grid.shape == (3, 2 * 34 + 2, 2 * (3 * 34 + 2) + 8)
    assert 0 <= grid.min() and grid.max() <= 1
    assert model.generator_ab.training  # visualize restores train mode


def test_metrics_compare_translated_a_with_real_b():
    model = tiny_cyclegan().eval()
    real_a, real_b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    real, fake = model.generate_for_metrics((real_a, real_b), 0)
    assert real is real_b and torch.equal(fake, model.generator_ab(real_a))


def test_regularised_losses_are_refused():
    with pytest.raises(ValueError, match="gp_weight=10.0.*loss=lsgan"):
        tiny_cyclegan(loss=AdversarialLoss("wasserstein", gp_weight=10.0))


# --- translation and download ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("height,width", [(17, 23), (9, 30), (16, 16)])
def test_translate_image_keeps_any_size(height, width):
    generator = ResnetGenerator(ngf=4, n_blocks=1).eval()
    image = torch.rand(1, 3, height, width) * 2 - 1
    out = translate_image(generator, image)
    assert out.shape == image.shape
    if height % 4 == 0 and width % 4 == 0:
        assert torch.equal(out, generator(image))  # no padding when none is needed


def test_translate_refuses_a_checkpoint_of_another_model(tmp_path: Path):
    ckpt = tmp_path / "gan.ckpt"
    torch.save({"state_dict": {}, "ganx": {"model_class": "ganx.models.gan.GAN", "config": {"run_name": "dcgan_mnist"}}}, ckpt)
    gray(10, 8).save(tmp_path / "x.png")
    with pytest.raises(SystemExit, match="needs a checkpoint of CycleGAN or Pix2Pix, but this one holds a GAN"):
        translate_main([f"ckpt={ckpt}", f"input={tmp_path / 'x.png'}", f"out={tmp_path / 'out'}"])


def test_translate_notes_inputs_of_another_size_than_the_training_images(tmp_path: Path, capsys):
    ckpt = tmp_path / "cyclegan.ckpt"
    write_cyclegan_checkpoint(ckpt, image_size=32)
    (tmp_path / "in").mkdir()
    gray(10, 32).save(tmp_path / "in" / "trained_size.png")
    gray(10, 64).save(tmp_path / "in" / "larger.png")
    translate_main([f"ckpt={ckpt}", f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}"])
    assert "1 of 2 image(s) differ from the 32x32 images the model was trained on" in capsys.readouterr().out
    with Image.open(tmp_path / "out" / "larger.png") as im:
        assert im.size == (64, 64)


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buffer.getvalue()


def test_download_unpacks_the_official_layout_and_never_overwrites(tmp_path: Path):
    png = io.BytesIO()
    gray(50, 8).save(png, format="PNG")
    server = tmp_path / "server"
    server.mkdir()
    (server / "horse2zebra.zip").write_bytes(
        zip_of({f"horse2zebra/{d}/{d}_0.png": png.getvalue() for d in ("trainA", "trainB", "testA", "testB")})
    )
    data_dir = tmp_path / "data"
    target = download_cyclegan("horse2zebra", data_dir, url_template=server.as_uri() + "/{name}.zip")
    assert target == data_dir / "horse2zebra" and (target / "testB" / "testB_0.png").is_file()
    assert [p.name for p in data_dir.iterdir()] == ["horse2zebra"]  # no temporary files left
    (target / "trainA" / "trainA_0.png").write_bytes(b"mine")
    download_cyclegan("horse2zebra", data_dir, url_template=server.as_uri() + "/{name}.zip")
    assert (target / "trainA" / "trainA_0.png").read_bytes() == b"mine"


def test_download_offline_names_the_url_and_the_layout(tmp_path: Path):
    with pytest.raises(DataError, match=r"http://127\.0\.0\.1:9/monet2photo\.zip.*trainA/, trainB/, testA/, testB/"):
        download_cyclegan("monet2photo", tmp_path, url_template="http://127.0.0.1:9/{name}.zip")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="unknown CycleGAN data set 'zebra2horse'; available: apple2orange"):
        download_cyclegan("zebra2horse", tmp_path)


# --- end to end ------------------------------------------------------------------------------------------------------

TINY = [
    "model=cyclegan",
    "data=unpaired",
    "data.load_size=36",
    "data.image_size=32",
    "data.num_workers=0",
    "model.generator_ab.ngf=4",
    "model.generator_ab.n_blocks=1",
    "model.discriminator_a.ndf=4",
    "model.num_visual=2",
]


@pytest.mark.e2e
def test_train_then_translate_a_file_and_a_folder(tmp_path: Path):
    root = write_unpaired(tmp_path / "ab", {"trainA": 4, "trainB": 3, "testA": 2, "testB": 2}, size=36)
    run = tmp_path / "run"
    train_in_process(*TINY, f"data.root={root}", "steps=3", "sample_every=2", "checkpoint_every=3",
                     f"hydra.run.dir={run}", *FAST, cwd=tmp_path)  # the CLI's process: test_train_cli
    ckpt = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert checkpoint["ganx"]["generator_steps"] == 3 and checkpoint["global_step"] == 6
    assert checkpoint["state_dict"]["fake_a_buffer._extra_state"]["images"].shape == (3, 3, 32, 32)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_0000002.png", "step_0000003.png"]
    with open(next(run.glob("csv/version_*/metrics.csv"))) as f:
        columns = set(next(csv.reader(f)))
    assert {f"train/{k}" for k in ("adversarial_a", "adversarial_b", "cycle_a", "cycle_b", "identity_a",
                                   "identity_b", "d_a_loss", "d_b_loss")} <= columns

    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    gray(100, 18).resize((22, 18)).save(photos / "odd size.png")
    Image.new("RGBA", (12, 12), (255, 0, 0, 128)).save(photos / "nested" / "alpha.png")
    cli_in_process("ganx.translate", f"ckpt={ckpt}", f"input={photos / 'odd size.png'}", f"out={tmp_path / 'one'}",
                   "direction=BtoA", cwd=tmp_path)
    with Image.open(tmp_path / "one" / "odd size.png") as im:
        assert im.size == (22, 18) and im.mode == "RGB"
    # A folder, through main(argv) as a Python caller passes it.
    folder_args = [f"ckpt={ckpt}", f"input={photos}", f"out={tmp_path / 'all'}"]
    translate_main(folder_args)
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.png")) == [
        "nested/alpha.png", "odd size.png"]
    with Image.open(tmp_path / "all" / "nested" / "alpha.png") as im:
        assert im.size == (12, 12) and im.mode == "RGB"
    with pytest.raises(SystemExit, match="already exist.*refusing to overwrite"):
        translate_main(folder_args)


def assert_same_tensors(a, b, where: str) -> None:
    """Nested dicts/lists of tensors and numbers are equal, tensors bit for bit."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.shape == b.shape and torch.equal(a, b), f"{where} differs"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.e2e
def test_resume_is_bit_exact_with_replay_buffers_and_the_lr_schedule(tmp_path: Path):
    root = write_unpaired(tmp_path / "ab", {"trainA": 2, "trainB": 2, "testA": 2, "testB": 2}, size=36)
    # 2 batches per epoch, and the learning rate decays after every epoch (factors 1, 3/4, 2/4, 1/4); buffers of 2
    # are full after 2 steps, so their random swaps are exercised. Crops, flips and B draws happen in 2 worker
    # processes, which start afresh on resume: the draws are seeded per item (ganx.data.sampling.SeededDraws).
    tiny = [arg for arg in TINY if not arg.startswith("data.num_workers=")]
    common = [*tiny, "data.num_workers=2", f"data.root={root}", "model.n_epochs=1", "model.n_epochs_decay=3",
              "model.replay_buffer_size=2", "checkpoint_every=3", "sample_every=100", "trainer.deterministic=true", "seed=7", "steps=6", *FAST]
    full = tmp_path / "full"
    train_in_process(*common, f"hydra.run.dir={full}", cwd=tmp_path)
    resumed = tmp_path / "resumed" / "checkpoints"
    resumed.mkdir(parents=True)
    shutil.copy(full / "checkpoints" / "step_0000003.ckpt", resumed)  # mid-epoch 1, after the first decay
    # In the same process as the full run: nothing it left behind may make up for state the checkpoint lacks
    # (a resume in a fresh process: test_ddp, test_slurm).
    train_in_process(*common, f"ckpt={resumed}/step_0000003.ckpt", cwd=tmp_path)
    a = torch.load(full / "checkpoints" / "step_0000006.ckpt", weights_only=True)
    b = torch.load(resumed / "last.ckpt", weights_only=True)
    assert (b["ganx"]["generator_steps"], b["global_step"]) == (6, 12)
    assert len(b["state_dict"]["fake_a_buffer._extra_state"]["images"]) == 2
    assert [s["last_epoch"] for s in b["lr_schedulers"]] == [2, 2]  # saved at the last batch, before its epoch end
    assert b["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(2e-4 / 2)
    assert_same_tensors(a["state_dict"], b["state_dict"], "state_dict")  # weights and replay buffer contents
    assert_same_tensors(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
    assert_same_tensors(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers")
    assert_same_tensors(a["ganx"]["rng"], b["ganx"]["rng"], "rng")
    logged = [row["step"] for f in resumed.parent.glob("csv/version_*/metrics.csv") for row in csv.DictReader(f.open())]
    assert logged and min(float(s) for s in logged) >= 3  # the resumed run's log continues the step count
