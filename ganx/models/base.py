"""The adversarial training core shared by every ganx model: manual optimization, step accounting, checks, logging.

Lightning counts every ``optimizer.step()`` in ``trainer.global_step``, so a GAN with k critic steps advances it by
k + 1 per training step. ganx counts what users mean by a step — one generator update per training batch — in
``generator_steps`` and maps ``steps=N`` to ``max_steps = N * optimizer_steps_per_batch`` (see ``ganx.train``).
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or Inf; raised before the optimizer step, so the weights are still the last good ones."""


@contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Exclude the modules' parameters from the autograd graph built inside the block.

    The generator update backpropagates *through* the discriminator; freezing it skips computing D's parameter
    gradients, which nobody uses and which would otherwise pollute the next critic step.
    """
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], Any]


class AdversarialModule(L.LightningModule):
    """Base class: two optimizers (generator side, discriminator side) stepped by hand in ``training_step``.

    Subclasses define the networks, ``generator_parameters``/``discriminator_parameters``,
    ``optimizer_steps_per_batch``, ``training_step`` and ``visualize``. A ``training_step`` ends with one generator
    update and ``self.generator_steps += 1`` (before callbacks see the batch end, so checkpoints hold the right count).
    """

    def __init__(
        self,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        g_scheduler: SchedulerFactory | None = None,
        d_scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
    ):
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}.")
        self.automatic_optimization = False
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        self.g_scheduler_factory, self.d_scheduler_factory = g_scheduler, d_scheduler
        self.scheduler_interval = scheduler_interval
        self.generator_steps = 0
        # The resolved run config, stored in every checkpoint so inference commands can rebuild the networks.
        self.run_config: dict | None = None

    # --- what a model defines ----------------------------------------------------------------------------------------

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    def discriminator_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    @property
    def real_batches_per_step(self) -> int:
        """How many real minibatches one training batch holds (the data module's ``batches_per_step``)."""
        return 1

    @property
    def optimizer_steps_per_batch(self) -> int:
        """How many ``optimizer.step()`` calls one training batch makes (Lightning's global_step increments)."""
        raise NotImplementedError

    @torch.no_grad()
    def visualize(self) -> Tensor:
        """An image (3, H, W) in [0, 1] that shows the model's current state (a sample grid, a translation grid)."""
        raise NotImplementedError

    @torch.no_grad()
    def generate_for_metrics(self, batch: Any, batch_idx: int) -> tuple[Tensor, Tensor]:
        """(real, fake) images in [-1, 1], each (N, C, H, W), for one batch of the held-out real split.

        The single model-specific part of FID/IS/KID (``ganx.metrics``, during training and in ``ganx.evaluate``):
        a GAN pairs the batch's real images with as many samples; CycleGAN returns the target-domain test images
        and the source-domain test images translated into that domain. Draw noise from ``metrics_noise(batch_idx)``
        so every evaluation sees the same latent codes and the training run's random stream is left alone.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement generate_for_metrics(batch, batch_idx) -> (real, fake), which "
            "FID/IS/KID need; train with metrics=none, or implement it (see AdversarialModule)."
        )

    def metrics_noise(self, batch_idx: int) -> torch.Generator:
        """A random generator seeded by (rank, batch index): the same codes at every evaluation of a run."""
        return torch.Generator(device=self.device).manual_seed(1_000_003 * self.global_rank + batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> tuple[Tensor, Tensor]:
        """Lightning's validation loop runs the metrics (``ganx.metrics.ImageMetricsCallback``); see above."""
        return self.generate_for_metrics(batch, batch_idx)

    # --- optimizers ---------------------------------------------------------------------------------------------------

    def configure_optimizers(self):
        g_opt = self.g_optimizer_factory(self.generator_parameters())
        d_opt = self.d_optimizer_factory(self.discriminator_parameters())
        schedulers = [
            factory(opt)
            for factory, opt in ((self.g_scheduler_factory, g_opt), (self.d_scheduler_factory, d_opt))
            if factory is not None
        ]
        return [g_opt, d_opt], schedulers

    def update(self, optimizer, loss: Tensor) -> None:
        """One optimizer step on ``loss``: clear gradients, backpropagate, step."""
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()

    def check_finite(self, **terms: Tensor) -> None:
        """Stop before a NaN/Inf loss reaches the weights, naming the term and the step."""
        for name, value in terms.items():
            if not torch.isfinite(value).all():
                raise NonFiniteLossError(
                    f"{name} is {value.item()} at generator step {self.generator_steps} "
                    f"(global step {self.global_step}). The weights were not updated with it. Common fixes: lower "
                    f"the learning rates, use loss=wasserstein_gp or a gradient penalty, check the data for NaNs."
                )

    def _step_schedulers(self) -> None:
        schedulers = self.lr_schedulers()
        if schedulers is None:
            return
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            scheduler.step()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.scheduler_interval == "step":
            self._step_schedulers()

    def on_train_epoch_end(self) -> None:
        if self.scheduler_interval == "epoch":
            self._step_schedulers()

    # --- logging ------------------------------------------------------------------------------------------------------

    def is_logging_step(self) -> bool:
        """True when Lightning will write this step's logged values (every ``trainer.log_every_n_steps``): costly
        diagnostics are computed only then."""
        trainer = self._trainer
        return trainer is not None and bool(trainer.loggers) and trainer._logger_connector.should_update_logs

    def log_step(self, metrics: dict[str, Tensor | float], prog_bar: Iterable[str] = ()) -> None:
        """Log per-step training values under ``train/``, plus both step counters and the learning rates."""
        g_opt, d_opt = self.optimizers()
        metrics = {
            **{f"train/{k}": v.detach() if isinstance(v, Tensor) else v for k, v in metrics.items()},
            "train/lr_g": g_opt.param_groups[0]["lr"],
            "train/lr_d": d_opt.param_groups[0]["lr"],
            "trainer/generator_steps": float(self.generator_steps),
            "trainer/optimizer_steps": float(self.global_step),
        }
        shown = {f"train/{k}" for k in prog_bar}
        self.log_dict({k: v for k, v in metrics.items() if k not in shown}, on_step=True, on_epoch=False)
        self.log_dict({k: v for k, v in metrics.items() if k in shown}, on_step=True, on_epoch=False, prog_bar=True)

    # --- checkpoint ---------------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganx"] = {
            "format": 1,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "generator_steps": self.generator_steps,
            "config": self.run_config,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.generator_steps = checkpoint.get("ganx", {}).get("generator_steps", 0)
