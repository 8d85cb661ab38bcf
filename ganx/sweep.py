"""Sweep summary: when a Hydra multirun ends, one table of its runs (``summary.csv`` and ``summary.md``).

Registered in ``conf/hydra/default.yaml`` as a Hydra callback, so every ``python -m ganx.train -m ...`` writes it.
Each row is one run: overrides, status, generator steps and wall time from its ``results.json`` (written by
``ganx.callbacks.RunSummary``), final and best metrics from its evaluation log (``evaluations.jsonl``,
``ganx.metrics.evaluations``). ``SweptKeys`` tells the jobs what the sweep varies, which names their W&B runs.
"""

import csv
import json
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ganx.config import SWEPT_KEYS_ENV
from ganx.metrics.evaluations import EVALUATIONS_FILE, best_values, read_evaluations

log = logging.getLogger(__name__)


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """One flat row per run directory below ``sweep_dir`` that holds a results.json, in job order.

    The ``overrides`` column shows what differs between the runs (the swept values), not the shared overrides.
    """
    paths = sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name))
    results = [json.loads(path.read_text()) for path in paths]
    overrides = [dict(o.split("=", 1) for o in r.get("overrides", []) if "=" in o) for r in results]
    varying = [k for k in dict.fromkeys(k for o in overrides for k in o) if len({o.get(k) for o in overrides}) > 1]
    rows = []
    for path, result, given in zip(paths, results, overrides, strict=True):
        shown = varying if len(results) > 1 else list(given)
        row = {"run": path.parent.name, "overrides": " ".join(f"{k}={given.get(k, '')}" for k in shown),
               "status": result["status"]}
        history = read_evaluations(path.parent / EVALUATIONS_FILE)
        final, best = (history[-1], best_values(history)) if history else (result.get("final", {}), result.get("best", {}))
        row |= {f"final {k.removeprefix('val/')}": v for k, v in final.items() if k.startswith("val/")}
        row |= {f"best {k.removeprefix('val/')}": v for k, v in best.items()}
        row |= {"generator_steps": result["generator_steps"], "wall_time_s": result["wall_time_s"]}
        rows.append(row)
    return rows


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect_results(sweep_dir)
    if not rows:
        log.warning("No results.json under %s: no sweep summary written.", sweep_dir)
        return rows
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    cell = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    log.info("Sweep summary of %d runs: %s/summary.md", len(rows), sweep_dir)
    return rows


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_summary(Path(config.hydra.sweep.dir))


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: its sweep overrides (``lr=1e-4,2e-4``, ``seed=range(3)``) and the sweeper's
    ``params`` (the Optuna search space, ``hparams_search=optuna``)."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    return list(dict.fromkeys([*keys, *(config.hydra.sweeper.get("params") or {})]))


class SweptKeys(Callback):
    """Tell the jobs of a multirun what it varies (``ganx.config.wandb_run_name`` names each job's W&B run by them)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEPT_KEYS_ENV, None)
