"""pix2pix: U-Net against the official parameter count and shapes, the training step, paired data (side-by-side
splitter, direction switch, one crop and flip for both images, two-folder matching, derived grayscale and edges), the
download of the official sets, and the CLI end to end (train, translate) on a tiny generated folder."""

import io
import tarfile
from functools import partial
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from helpers import FAST, fit, train_in_process
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms.v2.functional import rgb_to_grayscale

from ganx.data import DataError
from ganx.data.download import download
from ganx.data.paired import PairedDataModule, sobel_edges
from ganx.losses import AdversarialLoss
from ganx.models.pix2pix import Pix2Pix
from ganx.nets import PatchGANDiscriminator
from ganx.nets.unet import UNetGenerator
from ganx.translate import main as translate_main

ADAM = partial(torch.optim.Adam, lr=2e-4, betas=(0.5, 0.999))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- U-Net -----------------------------------------------------------------------------------------------------------


def test_unet_256_has_the_official_parameter_count():
    # pytorch-CycleGAN-and-pix2pix prints 54.414 M for unet_256 (ngf 64, batch norm: convs before a norm have no bias):
    # encoder 3*64*16 + 64*128*16 + 128*256*16 + 256*512*16 + 4 * 512*512*16, BN 2 * (128+256+512+512+512+512);
    # decoder 512*512*16 + 3 * 1024*512*16 + 1024*256*16 + 512*128*16 + 256*64*16 + 128*3*16 + 3, BN 2 * (512*4+256+128+64)
    encoder = 3 * 64 * 16 + 64 * 128 * 16 + 128 * 256 * 16 + 256 * 512 * 16 + 4 * 512 * 512 * 16 + 2 * 2432
    decoder = 512 * 512 * 16 + 3 * 1024 * 512 * 16 + 1024 * 256 * 16 + 512 * 128 * 16 + 256 * 64 * 16 + 128 * 3 * 16 + 3
    assert n_params(UNetGenerator(num_downs=8, ngf=64)) == encoder + decoder + 2 * (4 * 512 + 256 + 128 + 64) == 54_413_955
    # The official pix2pix discriminator on 3 + 3 channels: 2.769 M.
    assert n_params(PatchGANDiscriminator(6, ndf=64, norm="batch")) == 2_768_705


@pytest.mark.parametrize("in_channels,out_channels,size,num_downs", [(3, 3, 32, 5), (1, 3, 64, 6), (3, 1, 16, 2),
                                                                     (3, 3, (32, 64), 5)])
def test_unet_output_has_the_input_shape(in_channels, out_channels, size, num_downs):
    h, w = size if isinstance(size, tuple) else (size, size)
    x = torch.rand(2, in_channels, h, w) * 2 - 1
    y = UNetGenerator(in_channels, out_channels, num_downs=num_downs, ngf=4)(x)
    assert y.shape == (2, out_channels, h, w) and y.abs().max() <= 1


@pytest.mark.parametrize("num_downs,dropouts", [(8, 3), (6, 1), (5, 0)])
def test_dropout_sits_in_the_levels_just_above_the_innermost(num_downs, dropouts):
    net = UNetGenerator(num_downs=num_downs, ngf=2)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == dropouts


def test_skip_connections_carry_the_input_past_the_bottleneck():
    # The outermost decoder layer sees the first encoder layer's output directly: a pixel change reaches the output
    # near that pixel even when the bottleneck is cut (innermost weights zeroed).
    net = UNetGenerator(1, 1, num_downs=4, ngf=4, norm="none", dropout=0.0)
    innermost = net.net.block[1].block[3].block[3]
    with torch.no_grad():
        for p in innermost.parameters():
            p.zero_()
    x = torch.randn(1, 1, 16, 16, requires_grad=True)
    net(x)[0, 0, 5, 5].backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("image_size,num_downs", [(256, 8), (128, 7), (64, 6), (96, 5), (1024, 8)])
def test_without_num_downs_the_unet_goes_down_as_far_as_the_image_size_halves(image_size, num_downs):
    assert UNetGenerator(num_downs=None, image_size=image_size, ngf=2).num_downs == num_downs


def test_unet_names_the_sizes_it_needs():
    with pytest.raises(ValueError, match="40x40; with num_downs=5 both sides must be multiples of 32"):
        UNetGenerator(num_downs=5, ngf=2)(torch.zeros(1, 3, 40, 40))


# --- the model -------------------------------------------------------------------------------------------------------


def tiny_pix2pix(in_channels: int = 1, loss: AdversarialLoss | None = None, **kwargs) -> Pix2Pix:
    return Pix2Pix(UNetGenerator(in_channels, 3, num_downs=5, ngf=4), PatchGANDiscriminator(in_channels + 3, ndf=4),
                   loss or AdversarialLoss("non_saturating"), ADAM, ADAM, **kwargs)


def test_one_step_updates_d_on_pairs_then_g_on_adversarial_plus_lambda_l1():
    torch.manual_seed(0)
    model = tiny_pix2pix(lambda_l1=100.0, num_visual=2)
    pairs = TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1, torch.rand(8, 3, 32, 32) * 2 - 1)
    seen: list[int] = []
    model.discriminator.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[1]))
    logged = {}
    model.log_step = lambda stats, prog_bar=(): logged.update(stats)
    trainer = fit(model, 2, DataLoader(pairs, batch_size=4))
    assert model.generator_steps == 2 and trainer.global_step == 4
    assert seen == [4] * 6  # D always judges (input, output) pairs: 1 + 3 channels; 2 D passes + 1 G pass per step
    assert torch.isclose(logged["g_loss"], logged["g_adversarial"] + 100.0 * logged["l1"])
    grid = model.visualize()
    assert grid.shape == (3, 2 + 2 * 34, 2 + 3 * 34)  # two held-out pairs: input | output | target


class HeldOutPairs(L.LightningDataModule):
    """Training pairs and a held-out split (``val_set``), as ganx's image data modules have them."""

    def __init__(self, train_set: TensorDataset, val_set: TensorDataset):
        super().__init__()
        self.train_set, self.val_set = train_set, val_set

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=4)


def test_visualize_shows_the_first_held_out_pairs_or_without_a_data_module_the_first_training_pairs():
    train = TensorDataset(torch.rand(8, 1, 32, 32) * 2 - 1, torch.rand(8, 3, 32, 32) * 2 - 1)
    held_out = TensorDataset(torch.rand(3, 1, 32, 32) * 2 - 1, torch.rand(3, 3, 32, 32) * 2 - 1)
    for data, shown in ((HeldOutPairs(train, held_out), held_out), (DataLoader(train, batch_size=4), train)):
        model = tiny_pix2pix(num_visual=2)
        fit(model, 1, data)
        assert torch.equal(model.visual_input, shown.tensors[0][:2])
        assert torch.equal(model.visual_target, shown.tensors[1][:2])


def test_translation_is_deterministic_at_inference_and_stochastic_in_training():
    model = Pix2Pix(UNetGenerator(1, 3, num_downs=6, ngf=2), PatchGANDiscriminator(4, ndf=2),  # 6 levels: 1 dropout
                    AdversarialLoss("non_saturating"), ADAM, ADAM)
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(model.translate(x), model.translate(x))
    model.generator.train()
    torch.manual_seed(0)
    first = model.generator(x)
    assert not torch.equal(first, model.generator(x))  # dropout: the generator's noise


def test_regularised_losses_are_refused():
    with pytest.raises(ValueError, match="pix2pix does not apply critic regularisers.*gp_weight=10.0"):
        tiny_pix2pix(loss=AdversarialLoss("wasserstein", gp_weight=10.0))


# --- paired data -----------------------------------------------------------------------------------------------------


def save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def paired(root: Path, **kwargs) -> PairedDataModule:
    defaults = dict(load_size=40, image_size=32, batch_size=2, val_size=2)
    data = PairedDataModule(root, **{**defaults, **kwargs})
    data.setup()
    return data


def test_side_by_side_images_are_split_and_the_direction_switch_swaps_them(tmp_path: Path):
    ab = np.zeros((32, 64, 3), dtype=np.uint8)
    ab[:, :32, 0] = 255  # A: red on the left
    ab[:, 32:, 2] = 255  # B: blue on the right
    for i in range(5):
        save(ab, tmp_path / "facades" / "train" / f"{i}.png")
    save(ab, tmp_path / "facades" / "val" / "0.png")
    a_to_b = paired(tmp_path / "facades", load_size=32, flip=False)
    assert len(a_to_b.train_set) == 5 and len(a_to_b.val_set) == 1  # val/ is the held-out split
    source, target = a_to_b.train_set[0]
    assert source.shape == target.shape == (3, 32, 32)
    assert torch.allclose(source.mean((1, 2)), torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(target.mean((1, 2)), torch.tensor([-1.0, -1.0, 1.0]))
    b_to_a = paired(tmp_path / "facades", load_size=32, flip=False, direction="BtoA")
    swapped_source, swapped_target = b_to_a.val_set[0]
    assert torch.equal(swapped_source, target) and torch.equal(swapped_target, source)


@pytest.mark.parametrize("layout", ["aligned", "folders"])
def test_random_crops_and_flips_are_the_same_for_both_images(tmp_path: Path, layout: str):
    # A and B hold the same noise image, so the pair stays equal only if both get the same crop and flip.
    for i in range(4):
        image = noise(40, 40, seed=i)
        if layout == "aligned":
            save(np.concatenate([image, image], axis=1), tmp_path / "set" / f"{i}.png")
        else:
            save(image, tmp_path / "set" / "A" / f"{i}.png")
            save(image, tmp_path / "set" / "B" / f"{i}.bmp")  # names match without the extension
    data = paired(tmp_path / "set", layout=layout, val_size=0)
    torch.manual_seed(0)
    crops = set()
    for _ in range(10):
        for i in range(len(data.train_set)):
            source, target = data.train_set[i]
            assert source.shape == (3, 32, 32) and torch.equal(source, target)
            crops.add(tuple(source[:, 0, :3].flatten().tolist()))
    assert len(crops) > 8  # the crops and flips really are random


def test_two_folder_layout_names_unmatched_files(tmp_path: Path):
    save(noise(8, 8, 0), tmp_path / "set" / "A" / "x.png")
    save(noise(8, 8, 0), tmp_path / "set" / "B" / "y.png")
    with pytest.raises(DataError, match="no image in .*A has a partner of the same name.*A holds: x.png"):
        paired(tmp_path / "set", layout="folders", load_size=8, image_size=8)


def test_derived_grayscale_pairs_are_the_luma_of_the_colour_target(tmp_path: Path):
    for i in range(6):
        save(noise(40, 40, seed=i), tmp_path / "faces" / f"{i}.jpg")
    data = paired(tmp_path / "faces", layout="derived", derive="grayscale", input_channels=1, val_size=1)
    assert len(data.train_set) == 5 and len(data.val_set) == 1
    source, target = data.train_set[0]
    assert source.shape == (1, 32, 32) and target.shape == (3, 32, 32)
    assert torch.allclose(source, rgb_to_grayscale((target + 1) / 2) * 2 - 1, atol=1e-6)
    summary = data.summary()
    assert summary["source"] == "paired_derived" and summary["derive"] == "grayscale"


def test_sobel_edges_mark_exactly_the_two_columns_at_a_step():
    gray = torch.zeros(1, 6, 8)
    gray[:, :, 4:] = 1.0  # black left half, white right half
    edges = sobel_edges(gray, threshold=0.5)
    # Sobel x at columns 3 and 4 straddles the step: |gx| = 1 + 2 + 1 = 4; elsewhere 0 (replicated borders).
    expected = torch.ones(1, 6, 8)
    expected[:, :, 3:5] = 0.0
    assert torch.equal(edges, expected)
    assert torch.equal(sobel_edges(gray, threshold=4.5), torch.ones(1, 6, 8))


def test_bad_paired_settings_name_the_value(tmp_path: Path):
    with pytest.raises(DataError, match="data.layout='sideways'; choose one of aligned, folders, derived"):
        PairedDataModule(tmp_path, layout="sideways")
    with pytest.raises(DataError, match="data.input_channels=2"):
        PairedDataModule(tmp_path, input_channels=2)
    with pytest.raises(DataError, match="paired data set not found: .*missing.*download pix2pix facades"):
        paired(tmp_path / "missing")


def test_pix2pix_download_unpacks_a_tar_gz_and_names_the_sets(tmp_path: Path):
    server = tmp_path / "server"
    server.mkdir()
    png = io.BytesIO()
    Image.fromarray(noise(8, 16, 0)).save(png, format="PNG")
    with tarfile.open(server / "facades.tar.gz", "w:gz") as tf:
        for split in ("train", "val"):
            info = tarfile.TarInfo(f"facades/{split}/1.png")
            info.size = len(png.getvalue())
            tf.addfile(info, io.BytesIO(png.getvalue()))
    target = download("pix2pix", "facades", tmp_path / "data", url_template=server.as_uri() + "/{name}.tar.gz")
    assert (target / "train" / "1.png").is_file() and (target / "val" / "1.png").is_file()
    with pytest.raises(DataError, match="unknown pix2pix data set 'shoes2edges'; available: cityscapes"):
        download("pix2pix", "shoes2edges", tmp_path / "data")


# --- end to end ------------------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_train_colourisation_then_translate_a_colour_photo(tmp_path: Path):
    for i in range(10):
        save(noise(40, 40, seed=i), tmp_path / "faces" / f"{i}.png")
    run = tmp_path / "run"
    train_in_process("model=pix2pix", "data=anime_colorize", f"data.root={tmp_path / 'faces'}", "data.load_size=36",
                     "data.image_size=32", "data.batch_size=2", "data.num_workers=0", "data.val_size=2",
                     "model.generator.num_downs=5", "model.generator.ngf=4", "model.discriminator.ndf=4",
                     "model.num_visual=2", *FAST, "steps=3", "sample_every=3", "checkpoint_every=3",
                     f"hydra.run.dir={run}", cwd=tmp_path)
    grid = Image.open(run / "samples" / "step_0000003.png")
    assert grid.size == (2 + 3 * 34, 2 + 2 * 34)  # input | output | target for two held-out pairs
    out, ckpt = tmp_path / "colourised", run / "checkpoints" / "last.ckpt"
    translate_main([f"ckpt={ckpt}", f"input={tmp_path / 'faces' / '3.png'}", f"out={out}"])  # in-process
    colourised = Image.open(out / "3.png")
    assert colourised.size == (40, 40) and colourised.mode == "RGB"  # any size: padded for the U-Net, cropped back
    with pytest.raises(SystemExit, match="pix2pix translates in the direction it was trained"):
        translate_main([f"ckpt={ckpt}", f"input={tmp_path / 'faces'}", f"out={out}", "direction=BtoA"])
