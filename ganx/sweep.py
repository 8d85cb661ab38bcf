"""Sweep summary: one table of a Hydra multirun's runs (``summary.csv`` and ``summary.md``), failed jobs included.

Registered in ``conf/hydra/default.yaml`` as a Hydra callback, so every ``python -m ganx.train -m ...`` writes it,
after every job (a stopped sweep keeps the table of its jobs so far) and when the sweep ends. Each row is one run:
overrides, status, generator steps and wall time from its ``results.json`` (written by ``ganx.callbacks.RunSummary``,
or by ``SweepJob`` for a job that failed: status ``failed`` and the ``error``), final and best metrics from its
evaluation log (``evaluations.jsonl``, ``ganx.metrics.evaluations``). ``SweptKeys`` tells the jobs what the sweep
varies, which names their W&B runs.

Hydra builds these callbacks before every run, single runs too, and before ganx.train's first line: this module
imports what pulls torch and Lightning (the evaluation log's package, the run lock) where it is used.
"""

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from ganx.resolvers import SWEPT_KEYS_ENV
from ganx.run_files import RunDirError, write_file

log = logging.getLogger(__name__)

FAILED = "failed"
# The run dirs of the failed jobs of the sweep this process runs, for ganx.train's exit status (Hydra's multirun returns
# nothing to its caller): the jobs run in this process add themselves, and the table adds those a launcher ran elsewhere.
failed_runs: set[str] = set()


def collect_results(sweep_dir: Path) -> list[dict[str, Any]]:
    """One flat row per run directory below ``sweep_dir`` that holds a results.json, in job order.

    The ``overrides`` column shows what differs between the runs (the swept values), not the shared overrides.
    """
    from ganx.metrics.evaluations import EVALUATIONS_FILE, best_values, evaluations, features_of, read_rows

    paths = sorted(sweep_dir.glob("*/results.json"), key=lambda p: (len(p.parent.name), p.parent.name))
    results = [json.loads(path.read_text()) for path in paths]
    overrides = [dict(o.split("=", 1) for o in r.get("overrides", []) if "=" in o) for r in results]
    varying = [k for k in dict.fromkeys(k for o in overrides for k in o) if len({o.get(k) for o in overrides}) > 1]
    rows = []
    for path, result, given in zip(paths, results, overrides, strict=True):
        shown = varying if len(results) > 1 else list(given)
        row = {"run": path.parent.name, "overrides": " ".join(f"{k}={given.get(k, '')}" for k in shown),
               "status": result["status"]}
        logged = read_rows(path.parent / EVALUATIONS_FILE)
        history = evaluations(logged)
        final, best = (history[-1], best_values(history)) if history else (result.get("final", {}), result.get("best", {}))
        row |= {f"final {k.removeprefix('val/')}": v for k, v in final.items() if k.startswith("val/")}
        row |= {f"best {k.removeprefix('val/')}": v for k, v in best.items()}
        row["features"] = features_of(logged)
        row |= {"generator_steps": result["generator_steps"], "wall_time_s": result["wall_time_s"]}
        if "error" in result:
            row["error"] = result["error"]
        rows.append(row)
    return rows


def write_summary(sweep_dir: Path) -> list[dict[str, Any]]:
    rows = collect_results(sweep_dir)
    if not rows:
        log.warning("No results.json under %s: no sweep summary written.", sweep_dir)
        return rows
    scored_on = {row["features"] for row in rows if row["features"]}
    if len(scored_on) > 1:  # e.g. features=auto fell back differently per job: their numbers share no scale
        log.warning("The sweep's runs were scored on different features (%s): compare their metrics only within one "
                    "protocol; name one with metrics.features=...", "; ".join(sorted(scored_on)))
    columns = list(dict.fromkeys(k for row in rows for k in row))
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    # Atomic: rewritten after every job, and a kill must not leave half a table.
    write_file(sweep_dir / "summary.csv", table.getvalue())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    write_file(sweep_dir / "summary.md", "\n".join(lines) + "\n")
    log.info("Sweep summary of %d runs: %s/summary.md", len(rows), sweep_dir)
    return rows


def _markdown_cell(value: Any) -> str:
    # An error message may hold a "|", which would end the cell.
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")


class SweepSummary(Callback):
    """The sweep's table, after every job and when the sweep ends; a failed job in it makes ganx.train exit 1."""

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:  # Hydra calls it after a single run too, which has no sweep
            write_summary(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        rows = write_summary(sweep_dir)
        failed_runs.update(os.path.abspath(sweep_dir / row["run"]) for row in rows if row["status"] == FAILED)


class SweepJob:
    """One job of a sweep, for the record of its failure: ``failed(error)`` makes it a row of the table that says
    why. The record replaces only a ``results.json`` this job wrote (a run that failed while training keeps its steps
    and metrics). One that was there when the job started is another run's (a sweep rerun into the same
    ``hydra.sweep.dir`` is refused its run dirs) or an earlier attempt's, and a live run holds its dir's lock: both
    are left alone, and the job still counts as failed."""

    def __init__(self, run_dir: Path, run_name: str | None, overrides: list[str]):
        self.run_dir, self.run_name, self.overrides = run_dir, run_name, overrides
        self._start = time.perf_counter()
        self._results_before = self._results_version()

    def _results_version(self) -> tuple[int, int] | None:
        try:
            stat = (self.run_dir / "results.json").stat()
        except FileNotFoundError:
            return None
        return stat.st_ino, stat.st_mtime_ns  # a rewrite (write_file) is a new file

    def failed(self, error: str) -> None:
        from ganx.run_lock import RunLock, RunLockedError

        failed_runs.add(os.path.abspath(self.run_dir))
        try:
            with RunLock(self.run_dir):
                version = self._results_version()
                if version is not None and version == self._results_before:
                    log.warning("%s holds another run's results.json: the failure is not recorded there.", self.run_dir)
                    return
                own = json.loads((self.run_dir / "results.json").read_text()) if version else {}
                record = {"run_name": self.run_name, "overrides": self.overrides, "generator_steps": 0,
                          "wall_time_s": round(time.perf_counter() - self._start, 1), "final": {}, "best": {},
                          **own, "status": FAILED, "error": error}
                write_file(self.run_dir / "results.json", json.dumps(record, indent=2) + "\n")
        except (RunLockedError, RunDirError) as err:
            log.warning("The failure is not recorded in %s: %s", self.run_dir, err)


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun varies: its sweep overrides (``lr=1e-4,2e-4``, ``seed=range(3)``) and the sweeper's
    ``params`` (the Optuna search space, ``hparams_search=optuna``)."""
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    keys = [o.key_or_group for o in overrides if o.is_sweep_override()]
    return list(dict.fromkeys([*keys, *(config.hydra.sweeper.get("params") or {})]))


class SweptKeys(Callback):
    """Tell the jobs of a multirun what it varies (``ganx.resolvers.wandb_run_name`` names each job's W&B run by them)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[SWEPT_KEYS_ENV] = ",".join(swept_keys(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ.pop(SWEPT_KEYS_ENV, None)
