"""ganx.callbacks: each callback keeps its facts in its own state, and the run config stays the composed one."""

import json
from types import SimpleNamespace

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


def time_estimate_lines(caplog, *, start_step=0, every_checkpoint=500, eval_every=500, metrics=True, max_steps=2000,
                        max_time_s=None, seconds_per_step=0.4, critic_steps=1):
    """The TimeEstimate callback driven through a run's first steps on a fake clock (each generator step takes
    ``seconds_per_step``; the first one 5 s more, its warm-up): the log lines it wrote."""
    from lightning.pytorch.callbacks import Timer

    from ganx.callbacks import GeneratorStepCheckpoint, TimeEstimate

    clock = SimpleNamespace(now=100.0)
    callbacks = [GeneratorStepCheckpoint(every_checkpoint, "unused")]
    if max_time_s is not None:
        callbacks.append(Timer(duration={"seconds": max_time_s}))
    trainer = SimpleNamespace(callbacks=callbacks, max_steps=max_steps * (critic_steps + 1) if max_steps else -1,
                              is_global_zero=True, limit_val_batches=1.0 if metrics else 0, val_check_interval=eval_every)
    model = SimpleNamespace(generator_steps=start_step, optimizer_steps_per_batch=critic_steps + 1)
    estimate = TimeEstimate(after_steps=5, after_seconds=10, clock=lambda: clock.now)
    caplog.clear()
    with caplog.at_level("INFO", logger="ganx.callbacks.progress"):
        estimate.on_train_start(trainer, model)
        for i in range(200):
            clock.now += seconds_per_step + (5.0 if i == 0 else 0.0)
            model.generator_steps += 1
            estimate.on_train_batch_end(trainer, model, None, None, i)
    return [r.getMessage() for r in caplog.records]


def test_time_estimate_logs_one_line_with_the_speed_and_when_checkpoint_evaluation_and_end_come(caplog):
    # 0.4 s/step: 10 s after the first step is step 26 (later than step 5 + 1); warm-up of the first step left out.
    lines = time_estimate_lines(caplog)
    assert lines == ["~0.40 s/step here at step 26: first checkpoint at step 500 (in ~3.2 min), first evaluation at "
                     "step 500 (in ~3.2 min), 2000 steps in ~13.2 min"]
    # Fast steps: the 10 s come long after step 5; slow ones: step 5 after the 10 s.
    assert time_estimate_lines(caplog, seconds_per_step=0.125)[0].startswith("~0.12 s/step here at step 81:")
    assert time_estimate_lines(caplog, seconds_per_step=7.0)[0].startswith("~7.00 s/step here at step 6:")


def test_time_estimate_with_metrics_off_and_wgan_gp_counts(caplog):
    # WGAN-GP: 6 optimizer steps per generator step; steps are generator steps all the same.
    [line] = time_estimate_lines(caplog, metrics=False, seconds_per_step=5.3, critic_steps=5)
    assert line == ("~5.30 s/step here at step 6: first checkpoint at step 500 (in ~43.6 min), no evaluation "
                    "(metrics off), 2000 steps in ~2.9 h")


def test_time_estimate_with_max_time_ends_where_the_budget_does(caplog):
    # 30 minutes from the start at 0.9 s/step: at step 13, 16.7 s in, 1,783 s are left: 1,981 more steps.
    [line] = time_estimate_lines(caplog, max_steps=None, max_time_s=1800, seconds_per_step=0.9, eval_every=500)
    assert line.startswith("~0.90 s/step here at step 13:")
    assert line.endswith("first evaluation at step 500 (in ~7.3 min), trainer.max_time ends it at ~step 1994 "
                         "(in ~29.7 min)")
    # steps before the budget: steps end it; a checkpoint beyond the end is said not to come.
    [line] = time_estimate_lines(caplog, max_steps=300, max_time_s=1800, seconds_per_step=0.9)
    assert line.endswith("no checkpoint before the end (every 500 steps), no evaluation before the end "
                         "(every 500 steps), 300 steps in ~4.3 min, before trainer.max_time")
    [line] = time_estimate_lines(caplog, max_steps=None, seconds_per_step=0.9)
    assert line.endswith("no end set (steps=null, no trainer.max_time)")


def test_time_estimate_on_resume_counts_from_the_resumed_step(caplog):
    [line] = time_estimate_lines(caplog, start_step=1200, max_steps=2000)
    assert line == ("~0.40 s/step here at step 1226: first checkpoint at step 1500 (in ~1.8 min), first evaluation "
                    "at step 1500 (in ~1.8 min), 2000 steps in ~5.2 min")


def test_time_estimate_counts_the_toy_data_mode_coverage_as_evaluations(caplog):
    from ganx.callbacks.progress import evaluation_interval
    from ganx.metrics.modes import ModeCoverage

    trainer = SimpleNamespace(callbacks=[ModeCoverage(every_n_steps=250)], limit_val_batches=0, val_check_interval=500)
    assert evaluation_interval(trainer) == 250
    assert evaluation_interval(SimpleNamespace(callbacks=[], limit_val_batches=1.0, val_check_interval=500)) == 500
    assert evaluation_interval(SimpleNamespace(callbacks=[], limit_val_batches=0, val_check_interval=500)) is None
