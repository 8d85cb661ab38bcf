"""Every experiment config trains, sweeps write a summary table, Optuna searches run, the report page and the quickstart
notebook work."""

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import (
    FAST,
    HANG_GUARD_S,
    REPO,
    TOY,
    cli_in_process,
    compose_train,
    train_in_process,
    wandb_records,
    write_image_folder,
    write_mnist_raw,
)
from omegaconf import DictConfig, OmegaConf

from ganx.presets import CONF_DIR

pytestmark = pytest.mark.e2e

EXPERIMENTS = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))


def tiny_data(data: DictConfig, root: Path) -> list[str]:
    """Write a few generated images (or nothing, for the toy points) for the data module ``data`` names, and return
    the overrides that train on them in small batches."""
    small = [f"data.batch_size={min(data.batch_size, 4)}", "data.num_workers=0"]
    target = data._target_.rpartition(".")[2]
    if target in ("MNISTDataModule", "FashionMNISTDataModule"):
        write_mnist_raw(root)
        if target == "FashionMNISTDataModule":
            (root / "MNIST").rename(root / "FashionMNIST")
        return [f"data.data_dir={root}", "data.val_size=16", *small]
    if target == "ImageFolderDataModule":
        return [f"data.root={write_image_folder(root, n=40)}", "data.val_size=8", *small]
    if target == "PairedDataModule":  # pairs derived from a folder of images, whatever layout the experiment reads
        return [f"data.root={write_image_folder(root, n=40)}", "data.layout=derived", "data.val_size=8", *small]
    if target == "UnpairedDataModule":
        for seed, domain in enumerate(("trainA", "trainB", "testA", "testB")):
            write_image_folder(root / domain, n=4, seed=seed)
        # Crops of 32 (the nets are fully convolutional: the experiment's model is built all the same), a quarter
        # of the work of the emoji experiment's 64.
        return [f"data.root={root}", "data.load_size=36", "data.image_size=32", *small]
    if target == "GaussianMixtureDataModule":
        return ["data.train_size=256", "data.val_size=64", *small]
    raise NotImplementedError(f"{data._target_}: tests/test_experiments.py has no tiny data for it; add it to tiny_data()")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_config_composes_and_trains(experiment: str, tmp_path: Path):
    # Each conf/experiment/*.yaml as its command line in the README runs it, on tiny generated data for 2 steps: a
    # config that no longer composes, builds or trains fails here. Metrics are off (FAST): offline, the Inception
    # weights are missing.
    composed = compose_train(f"experiment={experiment}")
    # A GPU recipe (experiment=anime_gpu selects trainer=gpu) trains here on the CPU trainer, the rest of it as set.
    on_this_machine = ["trainer=default"] if composed.trainer.accelerator == "gpu" and not torch.cuda.is_available() else []
    overrides = [f"experiment={experiment}", *on_this_machine, *tiny_data(composed.data, tmp_path / "data"),
                 "steps=2", "sample_every=1", "checkpoint_every=2"]
    run = tmp_path / "run"
    train_in_process(*overrides, f"hydra.run.dir={run}", *FAST, cwd=tmp_path)  # the CLI's process: test_train_cli
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["ganx"]["generator_steps"] == 2
    # The run built the experiment's model (nets, loss, optimizers), not a default one.
    assert last["ganx"]["config"]["model"] == OmegaConf.to_container(compose_train(*overrides).model, resolve=True)
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["step_0000001.png", "step_0000002.png"]
    assert json.loads((run / "results.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_multirun_writes_summary_and_report(tmp_path: Path):
    sweep = tmp_path / "sweep"
    train_in_process("-m", "model=gan,lsgan", "seed=0,1", *TOY, *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 4
    assert {r["overrides"] for r in rows} == {f"model={m} seed={s}" for m in ("gan", "lsgan") for s in (0, 1)}
    assert all(r["status"] == "finished" and r["generator_steps"] == "4" for r in rows)
    assert all(0 <= float(r["best modes_covered"]) <= 8 for r in rows)
    assert "| run | overrides |" in (sweep / "summary.md").read_text()

    cli_in_process("ganx.report", str(sweep), cwd=tmp_path)
    page = (sweep / "report" / "index.html").read_text()
    assert page.count("<tr>") == 5 and "report/index.html" in page
    run_dir = sweep / sorted(r["run"] for r in rows)[0]
    run_page = (run_dir / "report" / "index.html").read_text()
    assert (run_dir / "report" / "curves.png").stat().st_size > 1000
    assert "../samples/step_0000002.png" in run_page and "../samples/step_0000004.png" in run_page


@pytest.mark.slow
def test_sweep_gives_each_job_its_own_wandb_run_named_by_the_swept_values(tmp_path: Path):
    sweep = tmp_path / "sweep"
    with_wandb = [f if f != "logger=csv" else "logger=wandb" for f in FAST]
    train_in_process("-m", "model.d_optimizer.lr=1e-4,2e-4", "model=gan", *TOY, *with_wandb,
                     f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    files = sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert [f.parents[2].name[0] for f in files] == ["0", "1"]  # one W&B run in each job's run dir
    runs = [wandb_records(f) for f in files]
    assert len({r["run"][0].run_id for r in runs}) == 2
    assert [r["run"][0].display_name for r in runs] == [f"gan_gaussian_ring_seed0 model.d_optimizer.lr={lr}"
                                                         for lr in ("0.0001", "0.0002")]
    assert {r["run"][0].run_group for r in runs} == {f"{tmp_path.name}/sweep"}  # one group: the sweep
    assert all(list(r["run"][0].tags) == ["gan", "gaussian_ring", "non_saturating"] for r in runs)
    # Each run holds its own job's config, and only its own job's values.
    configs = [{k: v for c in r["config"] for k, v in c.items()} for r in runs]
    assert [c["model"]["d_optimizer"]["lr"] for c in configs] == [1e-4, 2e-4]
    assert all(sum("model" in c for c in r["config"]) == 1 for r in runs)
    # W&B's step axis is the generator step, as in every other record.
    train_rows = [row for row in runs[0]["history"] if "train/g_loss" in row]
    assert [row["trainer/global_step"] for row in train_rows] == [row["trainer/generator_steps"] for row in train_rows]
    assert [row["trainer/global_step"] for row in train_rows] == [1, 2, 3, 4]


@pytest.mark.slow
def test_optuna_search_minimises_a_logged_metric(tmp_path: Path):
    # The toy data's share of high-quality samples stands in for FID (the sweep plumbing is the same).
    sweep = tmp_path / "optuna"
    train_in_process("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
                     "optimized_metric=val/high_quality", "model=gan", *TOY, *FAST, f"hydra.sweep.dir={sweep}",
                     cwd=tmp_path)
    assert (sweep / "optimization_results.yaml").is_file()
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()
    assert len(list(sweep.glob("*/results.json"))) == 2


def test_cluster_configs_compose():
    # Composed in-process, as `python -m ganx.train ... --cfg hydra` / `--cfg job` compose them (no start-ups).
    slurm = compose_train("hydra/launcher=submitit_slurm", "trainer=ddp", return_hydra_config=True)
    assert "SlurmLauncher" in OmegaConf.to_yaml(slurm.hydra)
    job = compose_train("trainer=ddp")
    assert "strategy" in OmegaConf.to_yaml(job.trainer)


def execute_quickstart(cwd: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    """The notebook, executed in a kernel started from ``cwd`` with its run dirs pointed at ``run_dir`` (and at no
    CycleGAN run); the executed notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    # The kernel imports this checkout's ganx, not an installed one.
    for name, value in (("GANX_RUN_DIR", run_dir), ("GANX_CYCLEGAN_RUN_DIR", cwd / "none"), ("OMP_NUM_THREADS", 1),
                        ("PYTHONPATH", REPO)):
        monkeypatch.setenv(name, str(value))
    nbclient.NotebookClient(notebook, timeout=HANG_GUARD_S, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


@pytest.mark.slow
def test_quickstart_notebook_executes_on_the_run_it_names(tmp_path: Path, monkeypatch):
    run = tmp_path / "outputs" / "gan_toy" / "run"
    data = write_mnist_raw(tmp_path / "data")
    train_in_process("model=gan", "data=mnist", f"data.data_dir={data}", "data.batch_size=16", "data.val_size=16",
                     "steps=3", "model.generator.hidden=[32]", "model.discriminator.hidden=[16]", f"hydra.run.dir={run}",
                     *FAST, cwd=tmp_path)
    notebook = execute_quickstart(tmp_path, run, monkeypatch)
    outputs = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert "3 generator steps" in outputs
    assert outputs.count("image/png") >= 3  # samples, interpolations, curves
    assert "No CycleGAN run at" in outputs and "python -m ganx.train model=cyclegan" in outputs


@pytest.mark.slow
def test_quickstart_notebook_names_the_command_that_makes_a_missing_run(tmp_path: Path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="Make it from .* with:  make train ARGS="):
        execute_quickstart(tmp_path, tmp_path / "outputs" / "not_trained", monkeypatch)
