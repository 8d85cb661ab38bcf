"""ganx.nets.batchnorm: standing statistics recomputed by hand."""

import torch
from torch import nn

from ganx.nets.batchnorm import standing_statistics


def test_standing_statistics_are_the_batch_statistics_of_the_networks_own_weights():
    # A Linear + BatchNorm net whose live running statistics are wrong for it: standing_statistics must replace them
    # with the mean and (unbiased) variance of the BatchNorm inputs over every pass, recomputed here by hand.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].running_mean.fill_(5.0)
    net[1].running_var.fill_(9.0)
    net.eval()  # as a sampler calls it: the mode must be restored, not left in train mode

    def draw(n, rng):
        return (torch.randn(n, 3, generator=rng) * 2 + 1,)

    standing_statistics(net, draw, batches=3, batch_size=50, seed=7)
    rng = torch.Generator().manual_seed(7)
    with torch.no_grad():
        hidden = [net[0](draw(50, rng)[0]) for _ in range(3)]
    torch.testing.assert_close(net[1].running_mean, torch.cat(hidden).mean(0), rtol=1e-5, atol=1e-5)
    # update_bn's cumulative average of per-batch unbiased variances (equal batch sizes)
    torch.testing.assert_close(net[1].running_var, torch.stack([h.var(0) for h in hidden]).mean(0), rtol=1e-5, atol=1e-5)
    assert net[1].momentum == 0.1 and not net.training  # momentum and mode restored
