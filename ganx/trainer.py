"""Step accounting: ganx counts generator steps, Lightning counts optimizer steps; this module converts between them.

A training batch is one generator step. Lightning counts every ``optimizer.step()`` in ``trainer.global_step`` and
``max_steps``, so a GAN with k critic steps advances it by k + 1 per batch (``model.optimizer_steps_per_batch``), and
its training batch holds k real minibatches (``model.real_batches_per_step``). Everything that builds a Trainer or
converts a step count asks the functions here rather than multiplying by hand.
"""

import lightning as L
from lightning.pytorch.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.plugins.io import CheckpointIO

from ganx.checkpoint import AtomicCheckpointIO


def optimizer_steps(model: L.LightningModule, generator_steps: int) -> int:
    """Lightning's step count (``global_step``, ``max_steps``) after ``generator_steps`` generator updates."""
    return generator_steps * model.optimizer_steps_per_batch


def generator_steps_in(model: L.LightningModule, optimizer_steps: int) -> int:
    """The whole generator updates that ``optimizer_steps`` Lightning steps make."""
    return optimizer_steps // model.optimizer_steps_per_batch


def training_batch_size(model: L.LightningModule, batch_size: int) -> int:
    """Images per training batch: ``batch_size`` real images for each of the model's real minibatches (the data
    module's ``batches_per_step``)."""
    return batch_size * model.real_batches_per_step


def build_trainer(model: L.LightningModule, generator_steps: int, **trainer_kwargs) -> L.Trainer:
    """A Lightning Trainer that stops after ``generator_steps`` generator updates of ``model``.

    ``trainer_kwargs`` are Lightning's (``conf/trainer/`` holds them; ``ganx.train`` instantiates this function).
    Checkpoints are written with ``AtomicCheckpointIO`` unless ``plugins`` name another checkpoint writer. In a SLURM
    job, Lightning's SLURM environment (ranks, nodes, main address from SLURM_*) is used with its own requeue off:
    ``ganx.faults.FaultHandler`` takes the requeue signal at the step boundary instead (see there why).
    """
    if "max_steps" in trainer_kwargs:
        raise ValueError(
            f"trainer.max_steps={trainer_kwargs['max_steps']} is set by ganx from the number of generator steps "
            "(it counts every optimizer step); remove it and set steps=<generator updates> instead."
        )
    plugins = list(trainer_kwargs.pop("plugins", None) or [])
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    if SLURMEnvironment.detect() and not any(isinstance(plugin, ClusterEnvironment) for plugin in plugins):
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return L.Trainer(max_steps=optimizer_steps(model, generator_steps), plugins=plugins, **trainer_kwargs)
