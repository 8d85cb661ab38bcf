"""ganx.nonfinite.NonFiniteGuard alone: a tiny network and optimizer, no Lightning (the training-run checks are in
test_base.py and test_precision.py)."""

import logging

import pytest
import torch
from torch import nn

from ganx.nonfinite import NonFiniteGuard, NonFiniteLossError

NAN = float("nan")


def tiny(fused: bool = False) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    return net, torch.optim.Adam(net.parameters(), lr=0.1, fused=fused)


def step(guard: NonFiniteGuard, net: nn.Module, optimizer, poison: float = 1.0, at: int = 0, **kwargs) -> None:
    """One training batch: the forward pass writes BatchNorm statistics, then the loss (times ``poison``) is updated."""
    guard.track(net)
    loss = net(torch.randn(8, 3)).mean() * poison
    guard.update(optimizer, loss, "d_loss", generator_step=at, global_step=2 * at,
                 optimizers=[optimizer] if kwargs.pop("on_device", False) else (), **kwargs)


def weights(net: nn.Module) -> list[torch.Tensor]:
    """Parameters and running statistics (BatchNorm's batch counter is not rolled back: it only counts)."""
    return [t.detach().clone() for k, t in net.state_dict().items() if not k.endswith("num_batches_tracked")]


def unchanged(net: nn.Module, before: list[torch.Tensor]) -> bool:
    return all(torch.equal(a, b) for a, b in zip(weights(net), before, strict=True))


def adam_steps(optimizer) -> set[int]:
    return {int(s["step"]) for s in optimizer.state.values()}


def test_a_nan_loss_stops_naming_the_term_and_step_and_leaves_weights_and_statistics_alone():
    net, optimizer = tiny()
    guard = NonFiniteGuard("stop")
    step(guard, net, optimizer, at=0)
    before = weights(net)  # BatchNorm's running statistics included
    with pytest.raises(NonFiniteLossError, match=r"d_loss is nan at generator step 3 \(global step 6\)\. The weights"):
        step(guard, net, optimizer, NAN, at=3)
    assert unchanged(net, before)


def test_batchnorm_statistics_written_by_a_refused_update_are_rolled_back():
    net, optimizer = tiny()
    guard = NonFiniteGuard("skip")
    step(guard, net, optimizer)
    before = weights(net)
    guard.track(net)
    loss = net(torch.full((8, 3), NAN)).mean()  # the forward pass writes NaN running statistics
    assert not torch.isfinite(net[1].running_mean).all()
    guard.update(optimizer, loss, "d_loss", generator_step=1, global_step=2)
    assert unchanged(net, before)


def test_skip_counts_refused_updates_and_stops_after_max_skips_in_a_row(caplog):
    net, optimizer = tiny()
    guard = NonFiniteGuard("skip", max_skips=3)
    step(guard, net, optimizer)
    before = weights(net)
    with caplog.at_level(logging.WARNING):
        step(guard, net, optimizer, NAN, at=1)
        step(guard, net, optimizer, NAN, at=2)
    assert guard.skipped_updates == 2 and unchanged(net, before) and adam_steps(optimizer) == {1}
    assert "d_loss is nan at generator step 2 (global step 4): update skipped (2 so far)" in caplog.text
    step(guard, net, optimizer, at=3)  # a finite loss ends the streak
    assert adam_steps(optimizer) == {2}
    step(guard, net, optimizer, NAN, at=4)
    step(guard, net, optimizer, NAN, at=5)
    with pytest.raises(NonFiniteLossError, match=r"3 of its updates in a row were skipped \(on_nonfinite_max_skips=3\)"):
        step(guard, net, optimizer, NAN, at=6)
    assert guard.skipped_updates == 5


def test_the_loss_goes_through_scale_loss_and_backward():
    net, optimizer = tiny()
    guard, seen = NonFiniteGuard(), []

    def backward(loss):
        seen.append(loss.item())
        loss.backward()

    guard.track(net)
    loss = net(torch.randn(8, 3)).mean()
    guard.update(optimizer, loss, "g_loss", generator_step=0, global_step=0, backward=backward,
                 scale_loss=lambda unscaled: unscaled * 1024)
    assert seen == [pytest.approx(loss.item() * 1024)] and adam_steps(optimizer) == {1}


def test_on_the_device_a_nan_update_is_skipped_there_and_counted_when_the_flags_are_read():
    net, optimizer = tiny(fused=True)
    guard = NonFiniteGuard("skip", check_every=3)
    step(guard, net, optimizer, on_device=True, at=0)
    before = weights(net)
    finite = guard.check("d_loss", torch.tensor(NAN), generator_step=1, global_step=2, optimizers=[optimizer])
    assert isinstance(finite, torch.Tensor) and not finite  # a flag on the device, not a host bool
    step(guard, net, optimizer, NAN, on_device=True, at=1)  # the third update: the flags are read
    assert guard.skipped_updates == 2 and unchanged(net, before) and adam_steps(optimizer) == {1}
    step(guard, net, optimizer, on_device=True, at=2)
    assert adam_steps(optimizer) == {2}


def test_on_the_device_stop_names_the_step_of_the_first_nan_at_the_next_read():
    net, optimizer = tiny(fused=True)
    guard = NonFiniteGuard("stop", check_every=4)
    step(guard, net, optimizer, on_device=True, at=0)
    before = weights(net)
    step(guard, net, optimizer, NAN, on_device=True, at=1)  # skipped and rolled back on the device, not raised yet
    step(guard, net, optimizer, NAN, on_device=True, at=2)
    assert unchanged(net, before) and adam_steps(optimizer) == {1}
    with pytest.raises(NonFiniteLossError, match=r"d_loss is NaN/Inf at generator step 1 \(2 update\(s\); found at "
                                                 r"generator step 3; on_nonfinite_check_every=4\)"):
        step(guard, net, optimizer, on_device=True, at=3)  # the fourth update reads the flags, before its step
    assert adam_steps(optimizer) == {1} and all(torch.isfinite(t).all() for t in weights(net))


def test_optimizers_that_cannot_skip_on_the_device_are_checked_on_the_host(caplog):
    net, optimizer = tiny(fused=False)
    guard = NonFiniteGuard("skip", check_every=10)
    with caplog.at_level(logging.INFO):
        step(guard, net, optimizer, NAN, on_device=True)
    assert guard.skipped_updates == 1 and "Adam cannot skip a step on the device" in caplog.text
