"""ganx.callbacks: each callback keeps its facts in its own state, and the run config stays the composed one."""

import json
from types import SimpleNamespace

import pytest

from ganx.callbacks import RunRecord


def test_run_record_keeps_the_data_facts_in_its_state_not_in_the_run_config(tmp_path):
    datamodule = SimpleNamespace(summary=lambda: {"source": "torchvision"})
    trainer = SimpleNamespace(datamodule=datamodule, loggers=[], max_steps=4, world_size=1, precision="32-true")
    model = SimpleNamespace(run_config={"seed": 0}, optimizer_steps_per_batch=1)
    record = RunRecord(str(tmp_path))
    record.on_fit_start(trainer, model)
    assert record.state_dict()["data"] == {"source": "torchvision"}
    assert json.loads((tmp_path / "run.json").read_text())["data"] == {"source": "torchvision"}
    assert model.run_config == {"seed": 0}


def time_estimate_lines(caplog, monkeypatch, *, start_step=0, every_checkpoint=500, eval_every=500, metrics=True,
                        max_steps=2000, max_time_s=None, time_used_s=0.0, seconds_per_step=0.4, critic_steps=1,
                        steps=200):
    """The TimeEstimate callback driven through a run's first ``steps`` steps on a fake clock, which Lightning's Timer
    reads too (each generator step takes ``seconds_per_step``, or ``seconds_per_step(i)`` for the i-th; the first one
    5 s more, its warm-up; ``time_used_s``: the Timer's elapsed time restored from a checkpoint): the log lines."""
    import lightning.pytorch.callbacks.timer
    from lightning.pytorch.callbacks import Timer

    from ganx.callbacks import GeneratorStepCheckpoint, TimeEstimate

    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(lightning.pytorch.callbacks.timer, "time", SimpleNamespace(monotonic=lambda: clock.now))
    callbacks = [GeneratorStepCheckpoint(every_checkpoint, "unused")]
    if max_time_s is not None:
        timer = Timer(duration={"seconds": max_time_s})
        timer.load_state_dict({"time_elapsed": {"train": time_used_s}})
        callbacks.append(timer)
    trainer = SimpleNamespace(callbacks=callbacks, max_steps=max_steps * (critic_steps + 1) if max_steps else -1,
                              is_global_zero=True, limit_val_batches=1.0 if metrics else 0,
                              val_check_interval=eval_every)
    model = SimpleNamespace(generator_steps=start_step, optimizer_steps_per_batch=critic_steps + 1)
    pace = seconds_per_step if callable(seconds_per_step) else lambda i: seconds_per_step
    estimate = TimeEstimate(after_steps=5, after_seconds=10, clock=lambda: clock.now)
    caplog.clear()
    with caplog.at_level("INFO", logger="ganx.callbacks.progress"):
        for callback in callbacks[1:] + [estimate]:
            callback.on_train_start(trainer, model)
        for i in range(steps):
            clock.now += pace(i) + (5.0 if i == 0 else 0.0)
            model.generator_steps += 1
            estimate.on_train_batch_end(trainer, model, None, None, i)
    return [r.getMessage() for r in caplog.records]


def test_time_estimate_logs_a_line_with_the_speed_and_when_checkpoint_evaluation_and_end_come(caplog, monkeypatch):
    # 0.4 s/step: 10 s after the first step is step 26 (later than step 5 + 1); warm-up of the first step left out.
    # The refreshed line at a tenth of the run, measured since the first line.
    lines = time_estimate_lines(caplog, monkeypatch)
    assert lines == ["~0.40 s/step here at step 26: first checkpoint at step 500 (in ~3.2 min), first evaluation at "
                     "step 500 (in ~3.2 min), 2000 steps in ~13.2 min",
                     "~0.40 s/step since step 26 at step 200: next checkpoint at step 500 (in ~2.0 min), next "
                     "evaluation at step 500 (in ~2.0 min), 2000 steps in ~12.0 min"]
    # Fast steps: the 10 s come long after step 5; slow ones: step 5 after the 10 s.
    assert time_estimate_lines(caplog, monkeypatch, seconds_per_step=0.125)[0].startswith("~0.12 s/step here at "
                                                                                          "step 81:")
    assert time_estimate_lines(caplog, monkeypatch, seconds_per_step=7.0)[0].startswith("~7.00 s/step here at step 6:")


def test_time_estimate_with_metrics_off_and_wgan_gp_counts(caplog, monkeypatch):
    # WGAN-GP: 6 optimizer steps per generator step; steps are generator steps all the same.
    line = time_estimate_lines(caplog, monkeypatch, metrics=False, seconds_per_step=5.3, critic_steps=5)[0]
    assert line == ("~5.30 s/step here at step 6: first checkpoint at step 500 (in ~43.6 min), no evaluation "
                    "(metrics off), 2000 steps in ~2.9 h")


def test_time_estimate_with_max_time_ends_where_the_budget_does(caplog, monkeypatch):
    # 30 minutes from the start at 0.9 s/step: at step 13, 16.7 s in, 1,783 s are left: 1,981 more steps.
    line = time_estimate_lines(caplog, monkeypatch, max_steps=None, max_time_s=1800, seconds_per_step=0.9)[0]
    assert line.startswith("~0.90 s/step here at step 13:")
    assert line.endswith("first evaluation at step 500 (in ~7.3 min), trainer.max_time ends it at ~step 1994 "
                         "(in ~29.7 min)")
    # steps before the budget: steps end it; a checkpoint beyond the end is said not to come.
    line = time_estimate_lines(caplog, monkeypatch, max_steps=300, max_time_s=1800, seconds_per_step=0.9)[0]
    assert line.endswith("no checkpoint before the end (every 500 steps), no evaluation before the end "
                         "(every 500 steps), 300 steps in ~4.3 min, before trainer.max_time")
    [line] = time_estimate_lines(caplog, monkeypatch, max_steps=None, seconds_per_step=0.9)
    assert line.endswith("no end set (steps=null, no trainer.max_time)")


def test_time_estimate_on_resume_counts_from_the_resumed_step(caplog, monkeypatch):
    line = time_estimate_lines(caplog, monkeypatch, start_step=1200, max_steps=2000)[0]
    assert line == ("~0.40 s/step here at step 1226: first checkpoint at step 1500 (in ~1.8 min), first evaluation "
                    "at step 1500 (in ~1.8 min), 2000 steps in ~5.2 min")


def test_time_estimate_on_resume_with_max_time_counts_the_time_the_resumed_run_used(caplog, monkeypatch):
    # 20 of the 30 minutes used before the checkpoint (Lightning's Timer restores them): at step 1213, 16.7 s into
    # this run, 583 s are left: 648 more steps at 0.9 s/step.
    line = time_estimate_lines(caplog, monkeypatch, start_step=1200, max_steps=None, max_time_s=1800,
                               time_used_s=1200, seconds_per_step=0.9)[0]
    assert line.startswith("~0.90 s/step here at step 1213:")
    assert line.endswith("trainer.max_time ends it at ~step 1861 (in ~9.7 min)")


def test_time_estimate_refreshes_once_when_the_first_steps_pace_does_not_hold(caplog, monkeypatch):
    # As in a 10-minute run whose neighbouring job was still starting up: 1.03 s/step for the first 20 steps, then
    # 1.2: the run ends at step 498. The first line predicts ~step 577; the refreshed one, at a tenth of that,
    # measures the pace since (mostly the slower one).
    lines = time_estimate_lines(caplog, monkeypatch, max_steps=None, max_time_s=600, steps=400,
                                seconds_per_step=lambda i: 1.03 if i < 20 else 1.2)
    assert len(lines) == 2
    assert lines[0].startswith("~1.03 s/step here at step 11:")
    assert lines[0].endswith("trainer.max_time ends it at ~step 577 (in ~9.7 min)")
    assert lines[1].startswith("~1.17 s/step since step 11 at step 58:")
    assert lines[1].endswith("trainer.max_time ends it at ~step 510 (in ~8.8 min)")
    # A run whose first line comes after a tenth of it gets no second one.
    assert len(time_estimate_lines(caplog, monkeypatch, max_steps=150)) == 1


def test_time_estimate_refuses_a_refresh_point_outside_the_run():
    from ganx.callbacks import TimeEstimate
    from ganx.errors import ConfigError

    with pytest.raises(ConfigError, match=r"refresh_at must be in \[0, 1\).*got 1.5"):
        TimeEstimate(refresh_at=1.5)


def test_time_estimate_counts_the_toy_data_mode_coverage_as_evaluations(caplog):
    from ganx.callbacks.progress import evaluation_interval
    from ganx.metrics.modes import ModeCoverage

    trainer = SimpleNamespace(callbacks=[ModeCoverage(every_n_steps=250)], limit_val_batches=0, val_check_interval=500)
    assert evaluation_interval(trainer) == 250
    assert evaluation_interval(SimpleNamespace(callbacks=[], limit_val_batches=1.0, val_check_interval=500)) == 500
    assert evaluation_interval(SimpleNamespace(callbacks=[], limit_val_batches=0, val_check_interval=500)) is None
