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
from helpers import FAST, HANG_GUARD_S, REPO, run_cli, untrained_classifier, write_mnist_raw

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
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
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
            "metrics.allow_small_fid=true", f"metrics.classifier_ckpt={untrained_classifier(tmp_path / 'cnn.pt')}",
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


def test_each_process_trains_on_its_own_shard_and_resumes_it_mid_epoch():
    """Under DDP the training sampler shards each epoch's permutation: disjoint data per process, every item once
    per epoch (the last n % world dropped), and resume_at counts batches per process (before, Lightning wrapped the
    sampler and a mid-epoch resume raised IndexError on both ranks, and the epoch arithmetic ignored the world)."""
    from torch.utils.data import DistributedSampler

    from ganx.data.sampling import ResumableShuffleSampler

    def shard(rank: int, batches_done: int = 0) -> ResumableShuffleSampler:
        sampler = ResumableShuffleSampler(21, batch_size=2, seed=5, num_replicas=2, rank=rank)
        sampler.resume_at(batches_done)
        return sampler

    epochs = {rank: [list(s) for s in [shard(rank)] for _ in range(3)] for rank in (0, 1)}
    for epoch in range(3):
        first, second = epochs[0][epoch], epochs[1][epoch]
        assert len(first) == len(second) == 10 and not set(first) & set(second)  # disjoint, equal length
        assert len(set(first) | set(second)) == 20
    assert epochs[0][0] != epochs[0][1]  # a new order every epoch
    # 5 batches per process per epoch: 7 batches done = epoch 1 after 2 batches, on each rank.
    for rank in (0, 1):
        resumed = shard(rank, batches_done=7)
        assert len(resumed) == 10 and isinstance(resumed, DistributedSampler)  # Lightning keeps it unwrapped
        assert list(resumed) == epochs[rank][1][4:] and list(resumed) == epochs[rank][2]


def test_a_ddp_run_interrupted_mid_epoch_and_resumed_equals_the_uninterrupted_run(tmp_path: Path):
    data = write_mnist_raw(tmp_path / "data", n_train=128, n_test=16)
    common = ["trainer=ddp_cpu", "model=gan", "data=mnist", f"data.data_dir={data}", "data.batch_size=8",
              "data.val_size=16", "model.generator.hidden=[32]", "model.discriminator.hidden=[16]",
              "sample_every=100", "checkpoint_every=3", "trainer.deterministic=true", *FAST]
    env = {"PYTHONPATH": str(REPO)}
    # 112 training images: 56 per process, 7 batches of 8 per epoch; step 3 is mid-epoch 0, step 9 mid-epoch 1.
    run_cli(*common, "steps=9", f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path,
            env={**env, "MASTER_PORT": free_port()})
    run_cli(*common, "steps=3", f"hydra.run.dir={tmp_path / 'part'}", cwd=tmp_path,
            env={**env, "MASTER_PORT": free_port()})
    run_cli(*common, "steps=9", f"ckpt={tmp_path / 'part' / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path,
            env={**env, "MASTER_PORT": free_port()})
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    resumed = torch.load(tmp_path / "part" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["ganx"]["generator_steps"] == full["ganx"]["generator_steps"] == 9
    assert resumed["global_step"] == full["global_step"]
    for key, value in full["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), f"{key} differs after the DDP resume"
