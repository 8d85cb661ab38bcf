"""Several discriminators scoring the same images as one (Kumari et al. 2022, "Ensembling Off-the-shelf Models for
GAN Training", the vision-aided GAN: a discriminator learned from pixels next to ones on frozen pretrained features).

The pretrained-feature member sees what an ImageNet network sees (shapes, parts, texture) from the first step; the
pixel member learns this data set's own statistics from the pixels, as a GAN's discriminator always has. The ensemble
returns the members' logits side by side, each member's repeated to the same count ``L`` (the least common multiple
of their counts), so a loss that averages a per-logit term over all logits (every adversarial loss in ganx.losses)
weights the members equally:

    mean over the (N, M * L) logits of f = 1/M * sum_m (mean over member m's (N, K_m) logits of f).

R1/R2 penalties differentiate the sum of the logits, which counts member m ``L / K_m`` times: weight them per member
by hand if an ensemble needs them (the presets do not use them). Members are called in the order given.
"""

import math

import torch
from torch import Tensor, nn


class DiscriminatorEnsemble(nn.Module):
    """``DiscriminatorEnsemble(projected=ProjectedDiscriminator(...), pixel=DCGANDiscriminator(...))``: each keyword
    is a member (an unconditional discriminator returning (N,) or (N, K) logits); their names are the config keys
    (``model.discriminator.pixel.norm``) and the state dict's prefixes."""

    def __init__(self, **members: nn.Module):
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"DiscriminatorEnsemble needs two or more member discriminators; got {list(members)}.")
        self.members = nn.ModuleDict(members)

    def forward(self, x: Tensor) -> Tensor:
        logits = [member(x).reshape(len(x), -1) for member in self.members.values()]
        common = math.lcm(*(scores.shape[1] for scores in logits))
        return torch.cat([scores.repeat_interleave(common // scores.shape[1], dim=1) for scores in logits], dim=1)
