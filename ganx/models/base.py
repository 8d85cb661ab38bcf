"""The base class of every ganx model, and what a new model defines (the shortest example: ``ganx.models.pix2pix``):

1. ``trains_on``: the batch kinds its ``training_step`` reads (``ganx.data.base.BatchKind``).
2. Its networks, and ``generator_parameters()`` / ``discriminator_parameters()`` for the two optimizers.
3. ``training_step``: the critic and generator updates, each ``self.update(optimizer, loss, name)`` (which applies the
   NaN/Inf policy, ``ganx.nonfinite``), then ``self.generator_steps += 1`` and ``self.log_step(stats)``.
4. ``optimizer_steps_per_batch``: Lightning's ``global_step`` counts every ``optimizer.step()`` (k + 1 per batch for
   k critic steps); ganx counts generator updates in ``generator_steps`` and maps ``steps=N`` to ``max_steps``.
5. ``visualize()`` (an image of the model's state) and ``generate_for_metrics(batch, batch_idx)`` (for FID/IS/KID).
6. ``__init__(..., **run_options)`` passed on to ``AdversarialModule.__init__`` (the run-level options below).
"""

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ganx._compat import attached_trainer, is_compiled
from ganx.augment import DiffAugment
from ganx.checkpoint import rng_state, set_rng_state
from ganx.data.base import BatchKind
from ganx.errors import ConfigError, check_whole_number
from ganx.models.ema import ema_settings
from ganx.nonfinite import NonFiniteGuard

log = logging.getLogger(__name__)


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
    """Two optimizers (generator side, discriminator side) stepped by hand in ``training_step``; what a model defines
    is listed at the top of this file. A ``training_step`` ends with one generator update and
    ``self.generator_steps += 1`` (before callbacks see the batch end, so checkpoints hold the right count).
    Every model names the roles alike: ``critic_step`` updates the discriminator(s), ``generator_step`` the
    generator(s), ``critic(...)`` returns the discriminator's logits where a model conditions it.

    The keyword-only arguments are run-level options, which every model accepts and passes on here (``ganx.train``
    sets them from the top-level config keys of the same names, ``RUN_OPTIONS``):

    Args:
        on_nonfinite, on_nonfinite_max_skips, on_nonfinite_check_every: what a NaN/Inf loss does, see
            ``ganx.nonfinite.NonFiniteGuard``.
        channels_last: keep the weights in NHWC memory layout (applied in ``setup``); "auto" is decided by
            ``ganx.trainer.build_trainer`` (``ganx.layout``), and stays off in a Trainer ganx did not build.
        compile: ``torch.compile`` the ``networks_to_compile()`` (applied in ``setup``).
        run_config: the resolved run config, stored in every checkpoint so inference commands can rebuild the
            networks (``ganx.checkpoint``).
        augment: the differentiable augmentation of every image the discriminator sees (``augment=diffaug|ada``,
            ``ganx.augment``); None or an empty policy: none. Only models with ``augments_critic_inputs``.
        ema: ``model.ema`` (decay | kimg, rampup), which every model config holds: refused here when set. A model that
            keeps an EMA generator takes ``ema`` itself and never passes it on (``GAN``; ``ganx.models.ema``).
    """

    # The batch kinds training_step reads; every model declares them (ganx.preflight.check_model_data_pairing refuses ()).
    trains_on: tuple[BatchKind, ...] = ()
    # Whether the model applies ``augment`` to its critic's inputs (the noise-to-image GANs).
    augments_critic_inputs: bool = False

    def __init__(
        self,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        g_scheduler: SchedulerFactory | None = None,
        d_scheduler: SchedulerFactory | None = None,
        scheduler_interval: str = "step",
        *,
        on_nonfinite: str = "stop",
        on_nonfinite_max_skips: int = 10,
        on_nonfinite_check_every: int = 1,
        channels_last: bool | str = False,
        compile: bool = False,
        run_config: dict | None = None,
        augment: DiffAugment | None = None,
        ema: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        if channels_last not in (True, False, "auto"):
            raise ConfigError(f"channels_last must be true, false or auto; got {channels_last!r}.")
        if scheduler_interval not in ("step", "epoch"):
            raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got {scheduler_interval!r}.")
        if on_nonfinite not in ("stop", "skip"):
            raise ConfigError(f"on_nonfinite must be 'stop' or 'skip', got {on_nonfinite!r}.")
        check_whole_number("on_nonfinite_max_skips", on_nonfinite_max_skips)
        check_whole_number("on_nonfinite_check_every", on_nonfinite_check_every)
        self.automatic_optimization = False
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        self.g_scheduler_factory, self.d_scheduler_factory = g_scheduler, d_scheduler
        self.scheduler_interval = scheduler_interval
        self.generator_steps = 0
        self.nonfinite_guard = NonFiniteGuard(on_nonfinite, on_nonfinite_max_skips, on_nonfinite_check_every)
        self.run_config = run_config
        # Not self.compile: that is nn.Module.compile, which setup calls on each network.
        self.channels_last, self.compile_in_setup = channels_last, compile
        self.augment = augment or DiffAugment(policy=())
        if self.augment.enabled and not self.augments_critic_inputs:
            raise ConfigError(
                f"augment={self.augment.policy} is not supported by {type(self).__name__}: DiffAugment and ADA were "
                "designed and evaluated for noise-to-image GANs (model=gan|dcgan|cgan|acgan ...), whose critic judges "
                "single images; a translation model's critic judges the generator's output against its input, and "
                "its L1/cycle losses would not see the augmentation. Train it with augment=none."
            )
        if ema_settings(ema):
            raise ConfigError(
                f"model.ema={ema_settings(ema)} is not supported by {type(self).__name__}: ganx keeps an EMA generator "
                "for the noise-to-image GANs (model=gan|dcgan|cgan|acgan ...) only, and ganx.translate loads raw "
                "generators. Leave model.ema.decay and model.ema.kimg unset."
            )

    # --- what a model defines ----------------------------------------------------------------------------------------

    def generator_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    def discriminator_parameters(self) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    # Critic (discriminator) updates per generator update, each on a fresh real minibatch: one training batch holds
    # this many (the data module's ``critic_steps``). ``model.critic_steps`` of the GANs; 1 for the others.
    critic_steps: int = 1

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
        and the source-domain test images translated into that domain. Draw noise from ``metrics_rng(batch_idx)``
        so every evaluation sees the same latent codes and the training run's random stream is left alone.
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement generate_for_metrics(batch, batch_idx) -> (real, fake), which "
            "FID/IS/KID need; train with metrics=none, or implement it (see AdversarialModule)."
        )

    def metrics_rng(self, batch_idx: int) -> torch.Generator:
        """A random generator seeded by (rank, batch index): the same codes at every evaluation of a run."""
        return torch.Generator(device=self.device).manual_seed(1_000_003 * self.global_rank + batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> tuple[Tensor, Tensor]:
        """Lightning's validation loop runs the metrics (``ganx.metrics.ImageMetricsCallback``); see above. The samples
        are drawn in float32 whatever ``trainer.precision`` is (Lightning autocasts validation steps too): metrics of a
        bf16-mixed run then match ``ganx.evaluate``'s, which generates in float32."""
        with torch.autocast(self.device.type, enabled=False):
            return self.generate_for_metrics(batch, batch_idx)

    def networks_to_compile(self) -> list[nn.Module]:
        """The networks ``compile=true`` compiles: all of them, unless a model needs what compile cannot do
        (double backward through a gradient penalty, see ``GAN``)."""
        return [m for m in self.children() if any(p.requires_grad for p in m.parameters())]  # not the EMA copy

    # --- speed switches ---------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if self.channels_last is True:
            # NHWC is oneDNN's native layout on CPU (and Tensor Cores' on GPU). Weights suffice: a conv with an NHWC
            # weight returns NHWC, so only the real images' first conv reorders its input.
            self.to(memory_format=torch.channels_last)
        if self.compile_in_setup:
            for network in self.networks_to_compile():
                if not is_compiled(network):
                    # In place (nn.Module.compile), so state_dict keys and checkpoints stay those of the eager nets.
                    network.compile()

    # --- optimizers ---------------------------------------------------------------------------------------------------

    def configure_optimizers(self):
        g_opt = _build_optimizer(self.g_optimizer_factory, self.generator_parameters(), "model.g_optimizer")
        d_opt = _build_optimizer(self.d_optimizer_factory, self.discriminator_parameters(), "model.d_optimizer")
        schedulers = [
            factory(opt)
            for factory, opt in ((self.g_scheduler_factory, g_opt), (self.d_scheduler_factory, d_opt))
            if factory is not None
        ]
        return [g_opt, d_opt], schedulers

    def update(self, optimizer, loss: Tensor, name: str = "loss") -> None:
        """One optimizer step on ``loss`` (clear gradients, backpropagate, step) through the run's non-finite policy
        (``ganx.nonfinite``): a NaN/Inf loss stops the run or is skipped, never stepped. Under
        ``trainer.precision=16-mixed`` the loss is scaled by this optimizer's own GradScaler (``ganx.precision``).
        """
        scale_loss = getattr(self.trainer.precision_plugin, "scale_loss", None)
        self.nonfinite_guard.update(
            optimizer, loss, name, generator_step=self.generator_steps, global_step=self.global_step,
            optimizers=self.trainer.optimizers, backward=self.manual_backward,
            scale_loss=(lambda unscaled: scale_loss(unscaled, optimizer, self)) if scale_loss else None,
        )

    @property
    def skipped_updates(self) -> int:
        """Updates refused for a NaN/Inf loss so far (``on_nonfinite=skip``), resumed from checkpoints."""
        return self.nonfinite_guard.skipped_updates

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self.nonfinite_guard.track(self)

    def on_train_end(self) -> None:
        self.nonfinite_guard.read_flags(self.generator_steps)

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
        """True when this training step's values are written to the loggers (every ``trainer.log_every_n_steps``
        generator steps, and at the step that stops training): costly diagnostics are computed only then."""
        return self._is_log_interval() and bool(attached_trainer(self).loggers)

    def _is_log_interval(self) -> bool:
        # Lightning's own rule for training steps, from public counters: the batch being trained (1-based, across
        # epochs and resumes; the same before and after this step's updates, unlike global_step or generator_steps).
        trainer = attached_trainer(self)
        if trainer is None or trainer.log_every_n_steps == 0:
            return False
        batch_number = trainer.fit_loop.total_batch_idx + 1
        return batch_number % trainer.log_every_n_steps == 0 or trainer.should_stop

    def log_step(self, metrics: dict[str, Tensor | float], prog_bar: Iterable[str] = ()) -> None:
        """Log per-step training values under ``train/``, plus both step counters and the learning rates.

        Only at the logging interval, and straight to each logger (``logger.log_metrics``) at the generator step just
        completed (the step axis of every ganx record: sample grids and evaluations of that step share it) with the
        epoch: ``self.log`` would log at Lightning's step (one less) and costs ~0.9 ms per value, which made logging
        ~7% of an MLP GAN's training time. One host sync per logging step
        reads all values. ``prog_bar`` values also go to the progress bar.
        """
        if not self._is_log_interval():
            return
        g_opt, d_opt = self.optimizers()
        tensors = {f"train/{k}": v for k, v in metrics.items() if isinstance(v, Tensor)}
        values = dict(zip(tensors, torch.stack([v.detach().float().reshape(()) for v in tensors.values()]).tolist(),
                          strict=True)) if tensors else {}
        values.update({f"train/{k}": float(v) for k, v in metrics.items() if not isinstance(v, Tensor)})
        values.update({
            "train/lr_g": g_opt.param_groups[0]["lr"],
            "train/lr_d": d_opt.param_groups[0]["lr"],
            "trainer/generator_steps": float(self.generator_steps),
            "trainer/optimizer_steps": float(self.global_step),
            "trainer/skipped_updates": float(self.skipped_updates),
            "epoch": self.trainer.current_epoch,
        })
        for logger in self.trainer.loggers:
            logger.log_metrics(values, step=self.generator_steps)
            logger.save()
        self.log_dict({f"train/{k}": values[f"train/{k}"] for k in prog_bar}, on_step=True, on_epoch=False,
                      prog_bar=True, logger=False)

    # --- checkpoint ---------------------------------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ganx"] = {
            "format": 1,
            "model_class": f"{type(self).__module__}.{type(self).__qualname__}",
            "generator_steps": self.generator_steps,
            "skipped_updates": self.skipped_updates,
            "config": self.run_config,
            "rng": rng_state(),
            "augment": self.augment.state_dict(),  # ADA's p: a resumed run goes on with the same probability
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ganx_state = checkpoint.get("ganx", {})
        self.generator_steps = ganx_state.get("generator_steps", 0)
        self.nonfinite_guard.skipped_updates = ganx_state.get("skipped_updates", 0)
        if "rng" in ganx_state:
            set_rng_state(ganx_state["rng"])
        if ganx_state.get("augment"):
            self.augment.load_state_dict(ganx_state["augment"])


def _build_optimizer(factory: OptimizerFactory, params: Iterable[nn.Parameter], key: str) -> Optimizer:
    try:
        return factory(params)
    except ValueError as err:  # torch's own message names the value, not the config key
        raise ConfigError(f"{key}: {err}. Fix it in the model config or with {key}.<arg>=<value>.") from err

