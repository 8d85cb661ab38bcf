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
