"""FID / IS / KID of a fixed real -> fake map over the held-out split, through Lightning's validation loop and
``ImageMetricsCallback``, on ``devices`` CPU processes (DDP over gloo when > 1). Used by tests/test_ddp.py: DDP
inside pytest must run in a subprocess, or the second rank re-runs the whole test session.

    python tests/ddp_metrics_script.py DATA_DIR RECORD_JSONL DEVICES
"""

import json
import math
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from ganx.data import MNISTDataModule
from ganx.metrics import FeatureExtractor, ImageMetrics, ImageMetricsCallback
from ganx.models import AdversarialModule

VAL_SIZE = 37  # odd: the two shards differ in size, and a padding sampler would count one image twice


class Projection(FeatureExtractor):
    """A fixed random projection of the pixels (6 pooled features, 4 logits): fast and deterministic."""

    name, pool_dim, num_logits, info = "projection", 6, 4, {}

    def __init__(self):
        super().__init__()
        weight = torch.randn(784, 10, generator=torch.Generator().manual_seed(0)) / math.sqrt(784)
        self.register_buffer("weight", weight)

    def forward(self, images: Tensor) -> Tensor:
        return images.flatten(1) @ self.weight


class FixedMap(AdversarialModule):
    """"Generates" a fixed function of each real image, so the generated set does not depend on the process layout."""

    def __init__(self):
        super().__init__(g_optimizer=None, d_optimizer=None)
        self.scale = nn.Parameter(torch.tensor(0.5))

    def generate_for_metrics(self, batch, batch_idx):
        real, _ = batch
        return real, torch.tanh(real.flip(-1) * self.scale + 0.1)


class WeightsAgreeAcrossRanks(L.Callback):
    """After training, write the largest difference between rank 0's and every other rank's G and D weights (for
    ``+callbacks.weights=...`` in a `trainer=ddp_cpu` CLI run): DDP must keep the replicas identical."""

    def __init__(self, path: str):
        self.path = Path(path)

    def on_train_end(self, trainer, pl_module) -> None:
        report = {}
        for name in ("generator", "discriminator"):
            flat = torch.cat([p.detach().flatten() for p in getattr(pl_module, name).parameters()])
            gathered = trainer.strategy.all_gather(flat)
            report[name] = float((gathered - gathered[0]).abs().max())
        if trainer.is_global_zero:
            self.path.write_text(json.dumps(report))


def run(data_dir: str, record: str, devices: int) -> dict:
    torch.set_num_threads(1)
    callback = ImageMetricsCallback(ImageMetrics(Projection(), kid_subset_size=10, is_splits=2), record)
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=DDPStrategy(process_group_backend="gloo") if devices > 1 else "auto",
        callbacks=[callback], logger=False, enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.validate(FixedMap(), datamodule=MNISTDataModule(data_dir=data_dir, batch_size=8, val_size=VAL_SIZE))
    return json.loads(Path(record).read_text().splitlines()[-1])


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], int(sys.argv[3]))
