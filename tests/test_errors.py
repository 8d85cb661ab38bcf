"""Every config error ganx raises reaches a ``ganx.train`` user as one line naming the key and the fix, exit 1, however
deep it was raised (a network Hydra builds, the model, a training step); a Ctrl-C while starting exits 130 with one
line (#25.8). Before, the constructors' errors came with a traceback of up to 66 lines.

``CASES`` holds a command line for every ``raise ConfigError`` and ``check_whole_number`` in ganx/ (or a reason in
``NOT_FROM_TRAIN``): ``test_every_config_error_has_a_case`` finds them in the source, so a new check needs a case.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST, HANG_GUARD_S, REPO, process_state_restored, train_in_process

TOY = ["data=gaussian_ring", "data.train_size=256", "data.val_size=64", "data.batch_size=32",
       "model.generator.hidden=[16]", "model.discriminator.hidden=[16]", "steps=1"]
PIX2PIX = ["model=pix2pix", "data=paired", "data.image_size=32", "model.generator.ngf=4", "model.discriminator.ndf=4"]
COLORIZE = ["model=pix2pix", "data=anime_colorize", "data.root={images}", "data.load_size=16", "data.image_size=16",
            "data.batch_size=2", "data.val_size=2", "data.num_workers=0", "model.generator.ngf=4",
            "model.discriminator.ndf=4", "steps=1"]
CYCLEGAN = ["model=cyclegan", "data=unpaired", "model.generator_ab.ngf=4", "model.generator_ab.n_blocks=1",
            "model.discriminator_a.ndf=4"]
STYLEGAN2 = ["model=stylegan2_lite", "data.image_size=32"]
FASTGAN = ["model=fastgan", "data.image_size=32"]
MNIST = ["data.data_dir={mnist}", "data.batch_size=6", "data.val_size=6", "data.num_workers=0", "steps=1"]

# id: (overrides, a part of the one line the user gets)
CASES = {
    # ganx.preflight, before anything is built
    "unknown key": (["+stepz=2"], "stepz is not a ganx setting (a typo?)"),
    "steps below the checkpoint's": ([*TOY, "ckpt={checkpoint}"], "steps=1, but {checkpoint} is already at generator "
                                     "step 2: steps is the run's total, not the steps to add"),
    "steps": (["steps=0"], "steps must be a whole number >= 1 (generator steps), got 0"),
    "checkpoint_keep": (["checkpoint_keep=0"], "checkpoint_keep must be a whole number >= 1 (periodic checkpoints"),
    "seed": (["seed=1.5"], "seed must be a whole number, got 1.5"),
    "optimized_metric without RunSummary": ([*TOY, "optimized_metric=val/fid", "~callbacks.summary"],
                                            "optimized_metric=val/fid is the best value RunSummary records"),
    "model and data": (["model=cyclegan", "data=anime"], "model=cyclegan trains on unpaired images of two domains, but "
                       "data=anime yields unlabeled images. Choose data that fits model=cyclegan (data=unpaired)"),
    "init_from with ckpt": (["init_from=a.ckpt", "ckpt=b.ckpt"], "init_from=a.ckpt starts a new run from a "
                            "checkpoint's weights, ckpt=b.ckpt resumes a run"),
    "one class for a conditional model": (["model=cgan", "data=anime", "data.labels=folders", "data.root={images}/part0"],
                                          "model=cgan is class-conditional and needs at least 2 classes (it learns"),
    # the model (built by ganx.instantiators, not wrapped by Hydra)
    "on_nonfinite": (["on_nonfinite=ignore"], "on_nonfinite must be 'stop' or 'skip', got 'ignore'"),
    "on_nonfinite_max_skips": (["on_nonfinite_max_skips=0"], "on_nonfinite_max_skips must be a whole number >= 1"),
    "on_nonfinite_check_every": (["on_nonfinite_check_every=0"], "on_nonfinite_check_every must be a whole number >= 1"),
    "critic_steps": (["model.critic_steps=0"], "model.critic_steps must be a whole number >= 1 (discriminator updates"),
    "latent_dim": (["model.latent_dim=0"], "model.latent_dim must be a whole number >= 1 (the size of z), got 0"),
    "latent_distribution": (["model.latent_distribution=cauchy"], "model.latent_distribution must be one of"),
    "gradient penalty with BatchNorm": (["model=wgan_gp", "model.discriminator.norm=batch"],
                                        "A gradient penalty needs a critic without BatchNorm"),
    "gradient penalty with packing": ([*TOY, "loss=wasserstein_gp", "model.discriminator.pack=2"],
                                      "A gradient penalty with a packing critic"),
    "clipping with spectral norm": (["model=dcgan_sn", "loss=wasserstein"], "Weight clipping (loss.clip_value=0.01) "
                                    "with a spectrally normalised critic"),
    "ema decay and kimg": (["model.ema.decay=0.9", "model.ema.kimg=10"], "model.ema: set decay (e.g. 0.999) or kimg"),
    "ema decay": (["model.ema.decay=1.5"], "model.ema.decay must be in [0, 1)"),
    "ema kimg": (["model.ema.kimg=-1"], "model.ema.kimg must be > 0 thousand images"),
    "ema rampup": (["model.ema.decay=0.9", "model.ema.rampup=0.05"], "model.ema.rampup=0.05 caps the kimg half-life"),
    "style mixing": ([*STYLEGAN2, "model.style_mixing_prob=2"], "model.style_mixing_prob must be in [0, 1]"),
    "cgan nets": (["model=cgan", "model/nets=dcgan"], "is built for num_classes=None, but model.num_classes=10; a "
                  "class-conditional model needs class-conditional nets"),
    "acgan nets": (["model=acgan", "model/nets=conditional_dcgan"], "ACGAN needs a discriminator with a class head"),
    "class_weight": (["model=acgan", "model.class_weight=-1"], "model.class_weight must be >= 0"),
    "fastgan nets": ([*FASTGAN, "model/nets=dcgan"], "model=fastgan needs a discriminator with decoders"),
    "augment a translation": ([*PIX2PIX, "augment=diffaug"], "is not supported by Pix2Pix: DiffAugment and ADA were"),
    "ema of a translation": ([*PIX2PIX, "model.ema.decay=0.9"], "is not supported by Pix2Pix: ganx keeps an EMA generator"),
    "num_visual": ([*PIX2PIX, "model.num_visual=0"], "model.num_visual must be >= 1 image pair, got 0"),
    "lambda_l1": ([*PIX2PIX, "model.lambda_l1=-1"], "model.lambda_l1 must be >= 0, got -1"),
    "critic regularisers": ([*PIX2PIX, "loss=wasserstein_gp"], "pix2pix does not apply critic regularisers, but the "
                            "loss sets gp_weight=10.0"),
    "relativistic": ([*PIX2PIX, "loss=rpgan", "loss.r1_weight=0", "loss.r2_weight=0"],
                     "pix2pix does not pair real and fake samples in its generator update, which the relativistic"),
    "cyclegan epochs": ([*CYCLEGAN, "model.n_epochs=-1"], "model.n_epochs and model.n_epochs_decay must be >= 0"),
    "cyclegan weights": ([*CYCLEGAN, "model.lambda_cycle=-1"], "model.lambda_cycle must be >= 0, got -1"),
    "replay buffer": ([*CYCLEGAN, "model.replay_buffer_size=-1"], "model.replay_buffer_size must be >= 0"),
    # the loss and the augmentation (built by Hydra: their messages name their keys)
    "loss name": (["loss.name=foo"], "Unknown loss 'foo'; choose one of"),
    "gp_weight": (["loss.gp_weight=-1"], "loss.gp_weight, loss.r1_weight and loss.r2_weight must be >= 0"),
    "reg_every": (["loss.reg_every=0"], "loss.reg_every must be a whole number >= 1 (critic steps between penalties)"),
    "clip_value": (["loss=wasserstein", "loss.clip_value=-1"], "loss.clip_value must be > 0 or null, got -1"),
    "gp_precision": (["model=wgan_gp", "loss.gp_precision=bf16"], "loss.gp_precision='bf16': choose one of float32, "
                     "autocast"),
    "channels_last": (["channels_last=yes"], "channels_last must be true, false or auto; got 'yes'"),
    "dcgan upsample": (["model=dcgan", "model.generator.upsample=pixelshuffle"], "model.generator.upsample must be one "
                       "of ('transposed', 'nearest', 'bilinear'); got 'pixelshuffle'"),
    "gp_center": (["model=wgan_gp", "loss.gp_center=-1"], "loss.gp_center must be >= 0 (1: WGAN-GP, 0: zero-centred)"),
    "gp_batch_shrink": (["model=wgan_gp", "loss.gp_batch_shrink=0"], "loss.gp_batch_shrink must be a whole number >= 1 "
                        "(the batch's share the gradient penalty uses is 1/gp_batch_shrink)"),
    "time estimate refresh_at": (["callbacks.time_estimate.refresh_at=1"], "callbacks.time_estimate.refresh_at must be "
                                 "in [0, 1) (0: no second line), got 1"),
    "pl_weight": ([*STYLEGAN2, "loss.pl_weight=-1"], "loss.pl_weight must be >= 0 (0 turns path-length"),
    "pl_every": ([*STYLEGAN2, "loss.pl_every=0"], "loss.pl_every must be a whole number >= 1, got 0"),
    "pl_batch_shrink": ([*STYLEGAN2, "loss.pl_batch_shrink=0"], "loss.pl_batch_shrink must be a whole number >= 1"),
    "pl_decay": ([*STYLEGAN2, "loss.pl_decay=2"], "loss.pl_decay must be in (0, 1] (0.01 in the paper), got 2"),
    "reconstruction_weight": ([*FASTGAN, "loss.reconstruction_weight=-1"], "loss.reconstruction_weight must be >= 0"),
    "reconstruction_distance": ([*FASTGAN, "loss.reconstruction_distance=lpips"], "loss.reconstruction_distance must "
                                "be one of ('l1', 'mse') (LPIPS, the paper's, needs VGG weights"),
    "augment policy": (["augment=diffaug", "augment.policy=[blur]"], "augment.policy: unknown transform(s) ['blur']"),
    "augment p": (["augment=diffaug", "augment.p=2"], "augment.p must be a probability in [0, 1], got 2"),
    "ada": (["augment=ada", "augment.interval=0"], "augment: interval must be >= 1, speed_kimg > 0 and target in"),
    # the networks (built by Hydra: the message starts with the node)
    "dcgan size": (["data.image_size=30"], "model.generator: DCGAN nets need image_size = s * 2**n"),
    "dcgan norm": (["model.discriminator.norm=btch"], "model.discriminator: norm must be one of ('batch', "),
    "mlp activation": ([*TOY, "model.generator.out_activation=relu"], "model.generator: out_activation must be "
                       "'tanh' or 'none'"),
    "mlp norm": ([*TOY, "model.discriminator.norm=batch"], "model.discriminator: norm must be 'none' or 'layer'"),
    "mlp pack": ([*TOY, "model.discriminator.pack=0"], "model.discriminator: pack must be an integer >= 1"),
    "patchgan": ([*PIX2PIX, "model.discriminator.n_layers=0"], "model.discriminator: PatchGANDiscriminator needs "
                 "ndf >= 1 and n_layers >= 1"),
    "unet size": ([*PIX2PIX, "model.generator.image_size=null"], "model.generator: UNetGenerator needs num_downs, or "
                  "image_size to derive it from"),
    "unet levels": ([*PIX2PIX, "model.generator.num_downs=1"], "model.generator: UNetGenerator needs num_downs >= 2"),
    "unet dropout": ([*PIX2PIX, "model.generator.dropout=1"], "model.generator: UNetGenerator dropout must be in"),
    "resnet norm": ([*CYCLEGAN, "model.generator_ab.norm=foo"], "model.generator_ab: norm must be one of"),
    "resnet width": ([*CYCLEGAN, "model.generator_ab.ngf=0"], "model.generator_ab: ResnetGenerator needs ngf >= 1"),
    "stylegan2 size": (["model=stylegan2_lite", "data.image_size=48"], "model.generator: StyleGAN2 nets need a "
                       "power-of-two image size"),
    "stylegan2 mapping": ([*STYLEGAN2, "model.generator.mapping_layers=0"], "model.generator: StyleGAN2 "
                          "mapping_layers must be >= 1"),
    "fastgan size": (["model=fastgan", "data.image_size=48"], "model.generator: FastGANGenerator is built for 32, 64, "
                     "128 or 256 px images; got image_size=48"),
    "fastgan width": ([*FASTGAN, "model.discriminator.base_width=2"], "model.discriminator: FastGANDiscriminator needs "
                      "base_width >= 4"),
    "conditioning": (["model=cgan", "model.generator.conditioning=foo"], "model.generator: generator conditioning must "
                     "be one of"),
    "num_classes": (["model=cgan", "model.num_classes=1"], "model.generator: num_classes must be an integer >= 2"),
    "sngan size": (["model=sngan", "data.image_size=28"], "model.generator: The SN-GAN ResNet nets are defined for"),
    "sngan norm": (["model=sngan", "data.image_size=32", "model.discriminator.norm=batch"], "model.discriminator: "
                   "SNGANResNetDiscriminator norm must be one of"),
    # the trainer and the callbacks
    "max_time": (["trainer.max_time=abc"], "trainer.max_time='abc' is not a duration; write it as DD:HH:MM:SS"),
    "max_time mapping": (["trainer.max_time={hours:x}"], "trainer.max_time={'hours': 'x'} is not a duration ("),
    "max_steps": (["+trainer.max_steps=5"], "trainer.max_steps=5 is set by ganx from the number of generator steps"),
    "best checkpoint mode": (["callbacks.best.mode=most"], "BestCheckpoint mode must be 'min' or 'max', got 'most'"),
    # in Trainer.fit, before or in the first step
    "optimizer": ([*TOY, "model.d_optimizer.lr=-0.1"], "model.d_optimizer: Invalid learning rate: -0.1. Fix it in the "
                  "model config or with model.d_optimizer.<arg>=<value>"),
    "data classes": (["model=cgan", "model.num_classes=5", *MNIST], "Class-conditional models need labeled data"),
    "augment points": ([*TOY, "augment=diffaug"], "transforms images (N, C, H, W), but got a batch of shape"),
    "mlp packing a batch": ([*TOY, "model.discriminator.pack=3"], "A batch of 32 samples cannot be packed 3 at a time"),
    "unet input": ([*COLORIZE, "model.generator.num_downs=5"], "UNetGenerator input is 16x16; with num_downs=5 both"),
    "patchgan input": ([*COLORIZE, "model.discriminator.n_layers=4"], "PatchGANDiscriminator input is 16x16; with "
                       "n_layers=4 it needs at least"),
    "minibatch stddev": ([*STYLEGAN2, *MNIST], "The minibatch standard deviation layer splits the batch into groups"),
    "optimized_metric": ([*TOY, "optimized_metric=val/nope"], "optimized_metric=val/nope was never logged"),
}

# Checks that ganx.train cannot reach (an earlier check refuses the value first), with the reason.
NOT_FROM_TRAIN = {
    "checkpoint_every must be >= 1 generator step": "ganx.preflight refuses checkpoint_every first",
    "checkpoint_keep must be >= 1 or null": "ganx.preflight refuses checkpoint_keep first",
    "sample_every must be >= 1 generator step": "ganx.preflight refuses sample_every first",
    "steps=null trains without a step limit": "ganx.preflight refuses steps=null without trainer.max_time first",
    "BestCheckpoint monitors": "needs an evaluation by FID/IS/KID or a classifier, too slow here; the error takes the "
                               "path of the other errors in Trainer.fit ('optimizer', 'data classes')",
    "model=stylegan2 needs the StyleGAN2 generator": "the stylegan2 presets give the generator StyleGAN2's settings, "
                                                     "which no other generator takes: Hydra refuses them first",
    "model.latent_distribution (ganx.latent.draw_latent)": "GAN refuses the value first; ganx.sample's is a "
                                                           "CheckpointError (test_checkpoint_safety.py)",
}


def run_train(tmp_path: Path, capsys, args: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of ``python -m ganx.train args...`` run in this process, as a user runs it (no
    HYDRA_FULL_ERROR)."""
    import ganx.train

    with pytest.raises(SystemExit) as stop, process_state_restored(tmp_path) as patch:
        patch.setattr(sys, "argv", ["ganx.train", *args, *FAST, f"hydra.run.dir={tmp_path / 'run'}"])
        patch.delenv("HYDRA_FULL_ERROR", raising=False)
        patch.setenv("WANDB_MODE", "offline")
        try:
            ganx.train.main()
        except KeyboardInterrupt:  # pytest would end the whole session on it
            pytest.fail("a KeyboardInterrupt escaped ganx.train.main")
    return stop.value.code, capsys.readouterr().err


def assert_one_line(code: int, stderr: str, expected_code: int, expected: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("ganx.train:")]
    assert code == expected_code and "Traceback" not in stderr and len(lines) == 1, stderr[-4000:]
    assert expected in lines[0], lines[0]


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES)
def test_a_config_error_is_one_line_naming_the_key(case, tmp_path, capsys, request):
    args, expected = CASES[case]
    paths = {"{images}": tmp_path / "images", "{mnist}": tmp_path / "data",
             "{checkpoint}": tmp_path / "trained" / "checkpoints" / "last.ckpt"}
    if any("{images}" in arg for arg in args):
        request.getfixturevalue("image_folder")
    if any("{mnist}" in arg for arg in args):
        request.getfixturevalue("mnist_dir")
    if any("{checkpoint}" in arg for arg in args):  # a run 2 generator steps long
        train_in_process(*TOY, "steps=2", *FAST, f"hydra.run.dir={tmp_path / 'trained'}", cwd=tmp_path)
    for placeholder, path in paths.items():
        args, expected = [arg.replace(placeholder, str(path)) for arg in args], expected.replace(placeholder, str(path))
    code, stderr = run_train(tmp_path, capsys, args)
    assert_one_line(code, stderr, 1, expected)


def message_parts(node: ast.Call) -> list[str]:
    """What identifies the message a ``ConfigError(...)`` or ``check_whole_number(key, ...)`` call builds in the line a
    user gets: its literal pieces of 10 characters or more, without surrounding punctuation, cut at 25."""
    first = node.args[0]
    pieces = first.values if isinstance(first, ast.JoinedStr) else [first]
    parts = [p.value for p in pieces if isinstance(p, ast.Constant) and isinstance(p.value, str)]
    if node.func.id == "check_whole_number":
        parts = [f"{part} must be a whole number" for part in parts]
    pieces = [part.strip(" .,:;")[:25].rstrip() for part in parts]
    return [piece for piece in pieces if len(piece) >= 10]


def config_error_sites() -> list[tuple[str, list[str]]]:
    """(file:line, message_parts) of every config check in ganx/."""
    sites = []
    for path in sorted((REPO / "ganx").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.args
                    and node.func.id in ("ConfigError", "check_whole_number") and path.name != "errors.py"):
                sites.append((f"{path.relative_to(REPO)}:{node.lineno}", message_parts(node)))
    return sites


def test_every_config_error_has_a_case():
    expected = [message for _, message in CASES.values()]
    sites = config_error_sites()
    assert len(sites) > 60, "the walk found too few checks: did ConfigError move?"
    missing = [f"{where}: {parts}" for where, parts in sites
               if not any(part in message for part in parts for message in [*expected, *NOT_FROM_TRAIN])]
    assert not missing, "config checks without a case in CASES (or a reason in NOT_FROM_TRAIN):\n" + "\n".join(missing)


# --- Ctrl-C while starting ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_ctrl_c_while_building_the_run_is_one_line_and_exit_130(tmp_path, capsys, monkeypatch):
    import ganx.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ganx.training, "instantiate_model", interrupted)
    code, stderr = run_train(tmp_path, capsys, TOY)
    assert_one_line(code, stderr, 130, "stopped by Ctrl-C before training began")


@pytest.mark.e2e
def test_ctrl_c_while_lightning_sets_up_the_data_exits_130_and_saves_nothing(tmp_path, capsys, monkeypatch):
    """Before, the FaultHandler saved last.ckpt at step 0 (for a resumed run: over its checkpoint, possibly before the
    optimizer state was restored) and the run exited 1."""
    from ganx.data import GaussianMixtureDataModule

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(GaussianMixtureDataModule, "setup", interrupted)
    code, stderr = run_train(tmp_path, capsys, TOY)
    assert code == 130 and "Traceback" not in stderr, stderr
    assert not list((tmp_path / "run" / "checkpoints").glob("*.ckpt"))


# Imports ganx.train as `python -m ganx.train` does, with a Ctrl-C arriving while Lightning is imported.
CTRL_C_DURING_IMPORT = """
import runpy, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "lightning":
            raise KeyboardInterrupt

sys.meta_path.insert(0, CtrlC())
sys.argv = ["ganx.train"]
runpy.run_module("ganx.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.e2e
def test_ctrl_c_while_importing_lightning_is_one_line_and_exit_130(tmp_path):
    result = subprocess.run([sys.executable, "-c", CTRL_C_DURING_IMPORT], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "", "PYTHONPATH": str(REPO)}, timeout=HANG_GUARD_S)
    assert_one_line(result.returncode, result.stderr, 130, "stopped by Ctrl-C before training began")


def test_a_ganx_error_under_hydras_wrapping_is_named_after_the_node_it_was_building(tmp_path):
    from hydra.errors import InstantiationException

    from ganx.preflight import ConfigError
    from ganx.training import user_error_message

    def wrapped(error: Exception, node: str) -> InstantiationException:
        try:
            raise InstantiationException(f"Error in call to target 'x.Y':\n{error!r}\nfull_key: {node}") from error
        except InstantiationException as wrapping:
            return wrapping

    assert user_error_message(wrapped(ConfigError("norm must be one of"), "model.discriminator"), tmp_path) == (
        "model.discriminator: norm must be one of")
    assert user_error_message(wrapped(ConfigError("loss.gp_weight must be"), "model.loss"), tmp_path) == (
        "loss.gp_weight must be")
    assert user_error_message(wrapped(TypeError("a bug"), "model.generator"), tmp_path) is None
