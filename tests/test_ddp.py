"""Multi-process runs on CPU (DDP over gloo, 2 processes): metrics equal a single-process run, and
`trainer=ddp_cpu` trains and evaluates. Each DDP run is a subprocess with its own MASTER_PORT."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import FAST, REPO, run_cli, write_mnist_raw

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # DDP: two processes per run
SCRIPT = Path(__file__).with_name("ddp_metrics_script.py")


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_processes_give_the_same_metrics_as_one(tmp_path: Path):
    from ddp_metrics_script import VAL_SIZE, run

    data = write_mnist_raw(tmp_path / "data", n_train=64, n_test=VAL_SIZE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "MASTER_PORT": free_port()}
    result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(tmp_path / "ddp.jsonl"), "2"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-5000:]
    two = json.loads((tmp_path / "ddp.jsonl").read_text().splitlines()[-1])
    one = run(str(data), str(tmp_path / "single.jsonl"), devices=1)
    assert two["val/num_real"] == two["val/num_fake"] == one["val/num_real"] == VAL_SIZE  # every image once: no padding
    for key in ("val/fid", "val/is", "val/kid"):
        assert two[key] == pytest.approx(one[key], rel=1e-5, abs=1e-7), key


def test_trainer_ddp_cpu_trains_and_evaluates(tmp_path: Path):
    data = write_mnist_raw(tmp_path / "data", n_train=128, n_test=37)
    run = tmp_path / "run"
    run_cli("trainer=ddp_cpu", "model=gan", "data=mnist", f"data.data_dir={data}", "data.batch_size=16",
            "data.val_size=37", "steps=4", "eval_every=2", "checkpoint_every=2", "sample_every=100",
            "model.generator.hidden=[32]", "model.discriminator.hidden=[16]", "metrics.kid_subset_size=10",
            "metrics.allow_small_fid=true",
            "+callbacks.weights._target_=ddp_metrics_script.WeightsAgreeAcrossRanks",
            f"+callbacks.weights.path={tmp_path}/weights.json",
            f"hydra.run.dir={run}", *[f for f in FAST if f != "metrics=none"], cwd=tmp_path,
            env={"MASTER_PORT": free_port(), "PYTHONPATH": f"{REPO}{os.pathsep}{SCRIPT.parent}"})
    assert json.loads((run / "run.json").read_text())["world_size"] == 2
    # Each rank trained on its own batches; averaged gradients keep the replicas equal, for D and G updates alike.
    assert json.loads((tmp_path / "weights.json").read_text()) == {"generator": 0.0, "discriminator": 0.0}
    rows = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    assert [r["generator_steps"] for r in rows] == [2, 4]
    assert all(r["val/num_real"] == r["val/num_fake"] == 37 for r in rows)  # both ranks' shares, each image once
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["ganx"]["generator_steps"] == 4
    assert (run / "checkpoints" / "best.ckpt").is_file()
