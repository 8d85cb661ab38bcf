"""The benchmark's reference arm: ganx's nets, losses and optimizers trained by a plain PyTorch loop in the style of
the PyTorch-GAN scripts (tests/test_bench.py checks that a step of it ends at ganx's weights)."""

import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from benchmarks.cases import Variant, synthetic_loader
from ganx.losses import clip_weights_, gradient_penalty, path_length_penalty, r1_penalty, r2_penalty
from ganx.models import CycleGAN, StyleGAN2
from ganx.models.base import frozen


def plain_gan_step(model, g_opt, d_opt, images: torch.Tensor, labels: torch.Tensor, step: int = 0) -> None:
    """One generator step the way the PyTorch-GAN scripts write it, with ganx's losses, nets and parts: D sees every
    image through ``model.augment`` (DiffAugment; the identity without it), the penalties (GP, R1, R2) are added every
    ``loss.reg_every``-th critic step times ``reg_every``, a relativistic G loss pairs the fakes with the last real
    minibatch, and the EMA generator is updated last. ``step``: generator steps before this one."""
    G, D, loss = model.generator, model.discriminator, model.loss

    def critic(x: torch.Tensor) -> torch.Tensor:
        return D(model.augment(x))

    for i, real in enumerate(images.chunk(model.critic_steps)):
        fake = G(model.sample_latent(real.shape[0])).detach()
        regularize = (step * model.critic_steps + i) % loss.reg_every == 0
        if regularize and loss.r1_weight > 0:
            real = real.detach().requires_grad_(True)
        if regularize and loss.r2_weight > 0:
            fake.requires_grad_(True)
        real_logits, fake_logits = critic(real), critic(fake)
        d_loss = loss.d_loss(real_logits, fake_logits)
        if regularize and loss.gp_weight > 0:
            n = loss.gp_batch_size(real.shape[0], getattr(D, "pack", 1))
            d_loss = d_loss + loss.reg_every * loss.gp_weight * gradient_penalty(
                critic, real[:n], fake[:n], loss.gp_center, loss.gp_one_sided, loss.gp_precision)
        if regularize and loss.r1_weight > 0:
            d_loss = d_loss + loss.reg_every * loss.r1_weight * r1_penalty(real_logits, real)
        if regularize and loss.r2_weight > 0:
            d_loss = d_loss + loss.reg_every * loss.r2_weight * r2_penalty(fake_logits, fake)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
        if loss.clip_value is not None:
            clip_weights_(D, loss.clip_value)
    fake = G(model.sample_latent(real.shape[0]))
    with frozen(D):
        fake_logits = critic(fake)
        g_loss = loss.g_loss(fake_logits, critic(real)) if loss.family.relativistic else loss.g_loss(fake_logits)
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()
    if model.generator_ema is not None:
        model.generator_ema.update(G, step * real.shape[0], real.shape[0])


def plain_stylegan2_step(model, g_opt, d_opt, images: torch.Tensor, labels: torch.Tensor, step: int) -> None:
    """One StyleGAN2 iteration (Karras et al. 2020) with ganx's nets and losses: a critic step with the logistic loss
    and, every ``reg_every``-th critic step, R1 scaled by ``reg_every``; a generator step with the non-saturating
    loss and, every ``pl_every``-th, the path-length penalty scaled by ``pl_every`` on batch // ``pl_batch_shrink``
    fresh samples; style mixing in every fake; then the EMA generator. ``step``: generator steps before this one.
    As in ganx the regularisers join their step's loss (the official code takes them as extra optimizer steps: the
    same forward and backward passes), and run in float32 under autocast."""
    G, D, loss = model.generator, model.discriminator, model.loss
    batch = images.shape[0] // model.critic_steps

    def mixed_styles(n: int) -> torch.Tensor:
        # Style mixing: for style_mixing_prob of the batches the layers from a random crossover on take another w.
        z = torch.randn(n, model.latent_dim)
        ws = G.styles(z)
        if torch.rand(()).item() < model.style_mixing_prob:
            crossover = int(torch.randint(1, ws.shape[1], ()))
            ws = torch.cat([ws[:, :crossover], G.styles(torch.randn_like(z), track_w_avg=False)[:, crossover:]], dim=1)
        return ws

    for i, real in enumerate(images.chunk(model.critic_steps)):
        r1 = loss.r1_weight > 0 and (step * model.critic_steps + i) % loss.reg_every == 0
        with torch.autocast("cpu", enabled=False) if r1 else nullcontext():
            with torch.no_grad():
                fake = G.synthesis(mixed_styles(batch))
            if r1:
                real = real.detach().float().requires_grad_(True)
            real_logits = D(real)
            d_loss = loss.d_loss(real_logits, D(fake))
            if r1:
                d_loss = d_loss + loss.reg_every * loss.r1_weight * r1_penalty(real_logits, real)
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
    fake = G.synthesis(mixed_styles(batch))
    with frozen(D):
        g_loss = loss.g_loss(D(fake))
    if loss.pl_weight > 0 and step % loss.pl_every == 0:
        with torch.autocast("cpu", enabled=False):
            ws = mixed_styles(max(1, batch // loss.pl_batch_shrink))
            penalty, pl_mean = path_length_penalty(G.synthesis(ws), ws, model.pl_mean, loss.pl_decay)
        model.pl_mean.copy_(pl_mean)
        g_loss = g_loss + loss.pl_every * loss.pl_weight * penalty
    g_opt.zero_grad()
    g_loss.backward()
    g_opt.step()
    model.generator_ema.update(G, step * batch, batch)


def plain_cyclegan_step(model, g_opt, d_opt, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    """One CycleGAN iteration as the official code writes it: both generators, then both discriminators on fakes
    drawn through the image buffers."""
    G_AB, G_BA, D_A, D_B, loss = (model.generator_ab, model.generator_ba, model.discriminator_a,
                                  model.discriminator_b, model.loss)
    lambda_cycle, lambda_identity = model.lambda_cycle, model.lambda_identity
    fake_b, fake_a = G_AB(real_a), G_BA(real_b)
    with frozen(D_A, D_B):
        loss_gan = model.adversarial_weight * (loss.g_loss(D_B(fake_b)) + loss.g_loss(D_A(fake_a)))
    loss_cycle = lambda_cycle * (F.l1_loss(G_BA(fake_b), real_a) + F.l1_loss(G_AB(fake_a), real_b))
    loss_identity = lambda_cycle * lambda_identity * (F.l1_loss(G_BA(real_a), real_a) + F.l1_loss(G_AB(real_b), real_b))
    g_opt.zero_grad()
    (loss_gan + loss_cycle + loss_identity).backward()
    g_opt.step()
    d_a = loss.d_loss(D_A(real_a), D_A(model.fake_a_buffer(fake_a.detach())))
    d_b = loss.d_loss(D_B(real_b), D_B(model.fake_b_buffer(fake_b.detach())))
    d_opt.zero_grad()
    (d_a + d_b).backward()
    d_opt.step()


def plain_step(model, g_opt, d_opt, batch, step: int) -> None:
    """One generator step of ``model``'s algorithm; ``step``: generator steps before it (lazy regularisation's
    schedule)."""
    if isinstance(model, StyleGAN2):
        plain_stylegan2_step(model, g_opt, d_opt, *batch, step)
    elif isinstance(model, CycleGAN):
        plain_cyclegan_step(model, g_opt, d_opt, *batch)
    else:
        plain_gan_step(model, g_opt, d_opt, *batch, step)


class PlainLoop:
    """The plain arm: the same nets, switched the same way (channels_last weights, compiled nets, autocast)."""

    def __init__(self, model, variant: Variant):
        self.model, self.variant = model, variant
        if variant.channels_last:
            model.to(memory_format=torch.channels_last)
        if variant.compile:
            for network in model.networks_to_compile():
                network.compile()
        self.g_opt, self.d_opt = model.configure_optimizers()[0]
        self.generator_steps = 0

    def step(self, batch) -> None:
        # No autocast weight cache (as Lightning's bf16-mixed): the step updates weights inside the context, and a
        # cached bf16 copy of D from before the critic update would be stale in the generator update.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.variant.bf16, cache_enabled=False):
            plain_step(self.model, self.g_opt, self.d_opt, batch, self.generator_steps)
        self.generator_steps += 1

    def run(self, cfg, steps: int, data: TensorDataset, clock=time.perf_counter) -> list[float]:
        times, batches = [], iter(synthetic_loader(cfg, self.model, data))
        last = clock()
        for _ in range(steps):
            self.step(next(batches))
            now = clock()
            times.append(now - last)
            last = now
        return times
