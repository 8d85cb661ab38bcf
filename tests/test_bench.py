"""The benchmark compares like with like: its plain loop is ganx's training step, and the CLI writes its report."""

import json
from functools import partial

import pytest
import torch
from helpers import fit, run_cli
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from ganx import bench

TINY = {
    "gan": ("model=gan", "data=mnist"),
    "wgan_gp": ("model=wgan_gp", "data=mnist", "model.critic_steps=2", "model.generator.base_width=8",
                "model.discriminator.base_width=8"),
    "cyclegan": ("model=cyclegan", "data=unpaired", "data.image_size=32", "model.generator_ab.ngf=8",
                 "model.generator_ab.n_blocks=1", "model.discriminator_a.ndf=8"),
}


def one_step(cfg, state, arm: str, variant: bench.Variant = bench.FP32, sgd: bool = False):
    """The weights after one training step from ``state`` on the same batch and random stream, by ``arm``.
    ``sgd``: plain SGD instead of the preset's Adam, whose first step (lr * g / |g|) turns float noise in a
    near-zero gradient into a full +-lr change."""
    # The switches are ganx's (applied by the model in setup); the plain arm applies the variant's itself.
    model = instantiate(cfg.model, channels_last=variant.channels_last, compile_networks=variant.compile)
    model.load_state_dict(state)
    if sgd:
        model.g_optimizer_factory = model.d_optimizer_factory = partial(torch.optim.SGD, lr=0.1)
    torch.manual_seed(1)
    loader = bench.synthetic_loader(cfg, model)
    batch = next(iter(loader))
    single = DataLoader(list(zip(*batch, strict=True)), batch_size=len(batch[0]))
    torch.manual_seed(2)
    if arm == "ganx":
        fit(model, 1, single, precision=variant.precision)
    else:
        loop = bench.PlainLoop(model, variant)
        loop.step(next(iter(single)))
    return model.state_dict()


@pytest.mark.parametrize("name", list(TINY))
def test_plain_loop_is_the_same_algorithm_as_ganx(name, tmp_path):
    """Same start, batch and random stream -> the same weights after a step: the benchmark times equal work.
    (A plain loop that skipped the penalty, a critic step or a cycle term would end elsewhere.)"""
    cfg = bench.compose_config(bench.Case(name, TINY[name], steps=1), str(tmp_path))
    torch.manual_seed(0)
    state = instantiate(cfg.model).state_dict()
    ganx_state, plain_state = one_step(cfg, state, "ganx"), one_step(cfg, state, "plain")
    moved = [k for k in state if isinstance(state[k], torch.Tensor) and state[k].is_floating_point() and not torch.equal(state[k], ganx_state[k])]
    assert moved, "the training step changed no weight"
    for key in state:
        torch.testing.assert_close(plain_state[key], ganx_state[key], rtol=1e-5, atol=1e-6, msg=key)


def test_channels_last_switch_keeps_the_math(tmp_path):
    """channels_last changes the memory layout, not the result: after one step, the weights differ from the default
    layout's by float reassociation only (measured: <= 1% of the step's change; a misread layout would differ by
    about as much as the weights themselves)."""
    cfg = bench.compose_config(bench.Case("dcgan", ("model=dcgan", "data=mnist", "model.generator.base_width=8",
                                                    "model.discriminator.base_width=8"), steps=1), str(tmp_path))
    torch.manual_seed(0)
    state = instantiate(cfg.model).state_dict()
    default = one_step(cfg, state, "ganx", sgd=True)
    switched = one_step(cfg, state, "ganx", bench.Variant("cl", channels_last=True), sgd=True)
    nhwc = [k for k, v in switched.items() if v.dim() == 4 and min(v.shape[1:]) > 1
            and v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()]
    assert nhwc, "no conv weight is in channels_last layout"
    for key, value in default.items():
        if value.is_floating_point():
            step = (value - state[key]).abs().max().item()
            difference = (switched[key] - value).abs().max().item()
            assert difference <= 0.05 * step + 1e-7, f"{key}: {difference:.2e} apart after a step of {step:.2e}"


@pytest.mark.e2e
def test_bench_cli_writes_table_and_json(tmp_path):
    run_cli("--models", "gan", "--switches", "", "--profile", "gan", "--steps", "2", "--repeats", "2", "--no-fid",
            "--out", str(tmp_path), cwd=tmp_path, module="ganx.bench")
    report = json.loads((tmp_path / "bench.json").read_text())
    (row,) = report["models"][0]["rows"]
    assert row["ganx_step_s"] > 0 and row["plain_step_s"] > 0 and len(row["per_repeat_ratios"]) == 2
    assert row["step_gflop"] > 0 and report["matmul_peak_gflops"] > 0
    table = (tmp_path / "bench.md").read_text()
    assert "| gan (MLP, 28x28) | fp32 |" in table and "aten::" in table  # the row and the profiler table
