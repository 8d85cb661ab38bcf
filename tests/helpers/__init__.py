"""Helpers the tests import (fixtures live in conftest.py), by topic: tiny generated data sets (``datasets``), tiny models
and checkpoint files (``models``), one way to train a model in-process (``training.fit``), the commands' real entry
points run in-process (``runs.train_in_process``, ``runs.cli_in_process``) and a runner for a command in its own
process (``runs.run_cli``), for tests of the process itself. Test modules import from here, never from each other."""

from .datasets import (
    data,
    untrained_classifier,
    write_class_folders,
    write_image_folder,
    write_mnist_raw,
    write_truncated_jpeg,
)
from .metrics import (
    TINY,
    ProjectionFeatures,
    TableFeatures,
    as_images,
    features,
    inception_unavailable,
    metrics_cfg,
    tiny_gan_28,
)
from .models import (
    TINY_GENERATOR,
    tiny_dcgan,
    tiny_gan,
    tiny_gan_config,
    write_checkpoint,
    write_cyclegan_checkpoint,
    write_ganx_checkpoint,
)
from .runs import (
    FAST,
    HANG_GUARD_S,
    REPO,
    TINY_GAN,
    TOY,
    cli_in_process,
    compose_train,
    end_wandb_session,
    process_state_restored,
    run_cli,
    train_in_process,
    train_whole_and_resumed,
    wandb_records,
)
from .training import (
    EVALUATE_EVERY_2,
    QUIET,
    ScriptedFID,
    checkpointing,
    fake_bf16_speedup,
    fit,
    fit_scripted,
    loader,
    training_loader,
)

__all__ = [
    "EVALUATE_EVERY_2", "FAST", "HANG_GUARD_S", "QUIET", "REPO", "TINY", "TINY_GAN", "TINY_GENERATOR", "TOY", "ProjectionFeatures", "ScriptedFID",
    "TableFeatures", "as_images", "features", "inception_unavailable", "metrics_cfg", "tiny_gan_28", "checkpointing", "fake_bf16_speedup",
    "cli_in_process", "compose_train", "data", "end_wandb_session", "fit", "fit_scripted", "loader",
    "process_state_restored", "run_cli", "tiny_dcgan", "tiny_gan", "tiny_gan_config", "train_in_process", "train_whole_and_resumed",
    "training_loader", "untrained_classifier", "wandb_records", "write_checkpoint", "write_cyclegan_checkpoint",
    "write_ganx_checkpoint",
    "write_class_folders", "write_image_folder", "write_mnist_raw", "write_truncated_jpeg",
]
