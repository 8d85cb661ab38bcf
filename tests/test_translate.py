"""ganx.translate: the direction picks the right generator, small inputs are skipped, reruns can continue."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import write_cyclegan_checkpoint
from PIL import Image
from torchvision.transforms.functional import to_tensor

from ganx.translate import main as translate_main
from ganx.translate import translate_image


def colour_image(path: Path, size: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_direction_picks_the_generator_whose_output_is_written(tmp_path, direction):
    generators = write_cyclegan_checkpoint(tmp_path / "c.ckpt")
    source = colour_image(tmp_path / "x.png", 16)
    translate_main([f"ckpt={tmp_path / 'c.ckpt'}", f"input={source}", f"out={tmp_path / 'out'}",
                    f"direction={direction}"])
    written = to_tensor(Image.open(tmp_path / "out" / "x.png"))
    image = to_tensor(Image.open(source)).unsqueeze(0) * 2 - 1
    with torch.no_grad():
        expected = {name: ((translate_image(g, image)[0] + 1) / 2).clamp(0, 1) for name, g in generators.items()}
    chosen, other = ("generator_ab", "generator_ba") if direction == "AtoB" else ("generator_ba", "generator_ab")
    # PNG stores 8 bits: the chosen generator's output to within one level, the other generator's far from it.
    assert (written - expected[chosen]).abs().max() <= 1 / 255 + 1e-6
    assert (written - expected[other]).abs().max() > 0.05


def test_inputs_too_small_are_skipped_and_reported_and_the_rest_translated(tmp_path, capsys):
    write_cyclegan_checkpoint(tmp_path / "c.ckpt")
    (tmp_path / "in").mkdir()
    for i, size in enumerate((16, 4, 16, 16)):
        colour_image(tmp_path / "in" / f"{i}.png", size, seed=i)
    translate_main([f"ckpt={tmp_path / 'c.ckpt'}", f"input={tmp_path / 'in'}", f"out={tmp_path / 'out'}"])
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["0.png", "2.png", "3.png"]
    assert "skipped 1 image(s) smaller than 8x8" in capsys.readouterr().out


def test_a_rerun_into_a_partly_written_folder_refuses_continues_or_overwrites(tmp_path, capsys):
    write_cyclegan_checkpoint(tmp_path / "c.ckpt")
    (tmp_path / "in").mkdir()
    for i in range(3):
        colour_image(tmp_path / "in" / f"{i}.png", 16, seed=i)
    out = tmp_path / "out"
    out.mkdir()
    (out / "0.png").write_bytes(b"written by the interrupted run")
    args = [f"ckpt={tmp_path / 'c.ckpt'}", f"input={tmp_path / 'in'}", f"out={out}"]
    with pytest.raises(SystemExit, match="1 of 3 output file.*existing=skip.*existing=overwrite"):
        translate_main(args)
    translate_main([*args, "existing=skip"])
    assert (out / "0.png").read_bytes() == b"written by the interrupted run"
    assert sorted(p.name for p in out.glob("*.png")) == ["0.png", "1.png", "2.png"]
    translate_main([*args, "existing=overwrite"])
    assert Image.open(out / "0.png").size == (16, 16)


def test_the_old_output_key_still_works_for_one_release_with_a_notice(tmp_path, capsys):
    write_cyclegan_checkpoint(tmp_path / "c.ckpt")
    source = colour_image(tmp_path / "x.png", 16)
    translate_main([f"ckpt={tmp_path / 'c.ckpt'}", f"input={source}", f"output={tmp_path / 'out'}"])
    assert (tmp_path / "out" / "x.png").is_file()
    assert "ganx.translate: output= is deprecated and will be removed in the next release; use out=" in (
        capsys.readouterr().err)
