"""Sweeps write a summary table, Optuna searches run, the report page and the quickstart notebook work."""

import csv
import json
import os
from pathlib import Path

import pytest
from conftest import FAST, REPO, run_cli

pytestmark = pytest.mark.e2e

TOY = ["data=gaussian_ring", "data.train_size=512", "data.val_size=256", "data.batch_size=32",
       "model.generator.hidden=[32]", "model.discriminator.hidden=[32]", "model.latent_dim=4",
       "model.num_fixed_samples=64", "steps=4", "sample_every=2", "checkpoint_every=4"]


def test_multirun_writes_summary_and_report(tmp_path: Path):
    sweep = tmp_path / "sweep"
    run_cli("-m", "model=gan,lsgan", "seed=0,1", *TOY, *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 4
    assert {r["overrides"] for r in rows} == {f"model={m} seed={s}" for m in ("gan", "lsgan") for s in (0, 1)}
    assert all(r["status"] == "finished" and r["generator_steps"] == "4" for r in rows)
    assert all(0 <= float(r["best modes_covered"]) <= 8 for r in rows)
    assert "| run | overrides |" in (sweep / "summary.md").read_text()

    run_cli(str(sweep), module="ganx.report", cwd=tmp_path)
    page = (sweep / "report" / "index.html").read_text()
    assert page.count("<tr>") == 5 and "report/index.html" in page
    run_dir = sweep / sorted(r["run"] for r in rows)[0]
    run_page = (run_dir / "report" / "index.html").read_text()
    assert (run_dir / "report" / "curves.png").stat().st_size > 1000
    assert "../samples/step_0000002.png" in run_page and "../samples/step_0000004.png" in run_page


def test_optuna_search_minimises_a_logged_metric(tmp_path: Path):
    # The toy data's share of high-quality samples stands in for FID (the sweep plumbing is the same).
    sweep = tmp_path / "optuna"
    result = run_cli("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=maximize",
                     "optimized_metric=val/high_quality",
                     "model=gan", *TOY, *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert (sweep / "optimization_results.yaml").is_file(), result.stdout[-2000:]
    assert "best_value" in (sweep / "optimization_results.yaml").read_text()
    assert len(list(sweep.glob("*/results.json"))) == 2


def test_cluster_configs_compose(tmp_path: Path):
    slurm = run_cli("hydra/launcher=submitit_slurm", "trainer=ddp", "--cfg", "hydra", cwd=tmp_path)
    assert "SlurmLauncher" in slurm.stdout
    job = run_cli("trainer=ddp", "--cfg", "job", cwd=tmp_path)
    assert "strategy" in job.stdout


def test_quickstart_notebook_executes(tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    run = tmp_path / "outputs" / "gan_toy" / "run"
    from conftest import write_mnist_raw

    data = write_mnist_raw(tmp_path / "data")
    run_cli("model=gan", "data=mnist", f"data.data_dir={data}", "data.batch_size=16", "data.val_size=16", "steps=3",
            "model.generator.hidden=[32]", "model.discriminator.hidden=[16]", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    notebook = nbformat.read(REPO / "notebooks" / "quickstart.ipynb", as_version=4)
    env = {"GANX_CKPT": str(run / "checkpoints" / "last.ckpt"), "GANX_OUTPUTS": str(tmp_path / "none"),
           "OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = json.dumps([c.get("outputs", []) for c in notebook.cells])
    assert "3 generator steps" in outputs
    assert outputs.count("image/png") >= 3  # samples, interpolations, curves
