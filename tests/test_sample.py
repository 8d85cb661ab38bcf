"""ganx.sample: a trained checkpoint samples from the EMA generator by default, with statistics of its own weights;
out= is checked before any checkpoint is read, and a folder out= gets one PNG per sample."""


import numpy as np
import pytest
import torch
from helpers import FAST, TINY_GENERATOR, train_in_process, write_checkpoint

from ganx.checkpoint import build_model, load_checkpoint
from ganx.latent import draw_latent
from ganx.sample import SampleConfig, sample


@pytest.mark.e2e
def test_quality_toolkit_composes_and_sample_uses_ema_by_default(mnist_dir, tmp_path):
    run = tmp_path / "run"
    train_in_process("model=dcgan", "loss=hinge", "model.discriminator.norm=spectral", "augment=diffaug",
                     "model.ema.decay=0.999", "data=mnist", f"data.data_dir={mnist_dir}", "data.batch_size=8",
                     "data.val_size=8", "model.generator.base_width=8", "model.discriminator.base_width=8",
                     "model.latent_dim=16", "model.num_fixed_samples=4", "steps=2", "checkpoint_every=2",
                     "sample_every=2", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(ckpt)
    assert checkpoint["ganx"]["generator_steps"] == 2
    assert any(k.startswith("generator_ema.module.") for k in checkpoint["state_dict"])
    model = build_model(checkpoint)
    z = draw_latent(4, 16, "normal", torch.Generator().manual_seed(3))
    # The checkpoint's EMA copy carries the live generator's BatchNorm statistics; sampling recomputes them
    expected = {"ema": model.sampling_generator().eval()(z), "trained": model.generator(z)}
    for name, ema in (("ema", None), ("trained", False)):
        out = sample(SampleConfig(ckpt=str(ckpt), n=4, out=str(tmp_path / f"{name}.npz"), seed=3, ema=ema))
        pixels = torch.from_numpy(np.load(out)["images"]).float()
        want = (((expected[name].detach() + 1) / 2).clamp(0, 1) * 255).round()
        assert torch.equal(pixels, want), name
    assert not torch.equal(expected["ema"], expected["trained"])


def test_sample_checks_out_before_sampling(tmp_path):
    from ganx.sample import main as sample_main

    missing = tmp_path / "missing.ckpt"  # the out= check comes first: no checkpoint is even read
    with pytest.raises(SystemExit, match="give a grid image"):
        sample_main([f"ckpt={missing}", f"out={tmp_path}/grid.gif"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "000000.png").write_bytes(b"")
    with pytest.raises(SystemExit, match="already holds PNG files"):
        sample_main([f"ckpt={missing}", f"out={tmp_path}/full"])
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(SystemExit, match="cannot write to"):
        sample_main([f"ckpt={missing}", f"out={blocker}/sub/grid.png"])


def test_sample_writes_one_png_per_sample_into_a_folder(tmp_path):
    from PIL import Image

    from ganx.sample import main as sample_main

    ckpt = write_checkpoint(tmp_path / "ok.ckpt", TINY_GENERATOR)
    sample_main([f"ckpt={ckpt}", "n=5", f"out={tmp_path}/samples/"])
    files = sorted((tmp_path / "samples").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
    assert Image.open(files[0]).size == (4, 4)
