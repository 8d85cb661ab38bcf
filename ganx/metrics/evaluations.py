"""The evaluation log: ``<run dir>/evaluations.jsonl``, the one record of a run's evaluations.

Every evaluator (FID/IS/KID and the class metrics in ``ganx.metrics.callback``, mode coverage in
``ganx.metrics.modes``) appends one JSON row per evaluation through ``append_evaluation``:
``{"generator_steps": 4, "val/fid": 12.3, ..., "protocol": {...}}`` — the step, every ``val/*`` value it logged and
the protocol its numbers hold under (extractor and weights hash, sample counts, split, thresholds). Everything else
is derived from this file: ``results.json`` (final, best, history; ``ganx.callbacks.RunSummary``), the sweep table
(``ganx.sweep``), the report's metric curves (``ganx.report``) and the value an Optuna sweep minimises.

Resume rule: the log is the truth. A run resumed from a checkpoint at generator step s keeps the rows up to and
including step s and drops the rows beyond it (``RunSummary`` rewrites the log when the fit starts), then appends
its own; the evaluation at step s itself ran after that checkpoint was written and is not repeated, so it is kept
from the log. A fresh run starts an empty log. Readers merge rows by generator step (several evaluators report the
same step; a later row's value replaces an earlier one), never by comparing values (NaN != NaN).
"""

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

from ganx.run_files import append_text, write_file

log = logging.getLogger(__name__)

EVALUATIONS_FILE = "evaluations.jsonl"
# Metrics where a lower value is better; every other val/* value is better when higher.
LOWER_IS_BETTER = ("fid", "kid", "reverse_kl", "intra_fid")
# A protocol-named key (ganx.metrics.image_metrics.protocol_key): metric, generated-image count, split, extractor.
PROTOCOL_NAMED = re.compile(r"(?P<metric>[a-z]+)(?P<count>\d+k?)_(?P<split>[a-z]+)_\S+")


def metric_of(name: str) -> str:
    """The metric a logged name holds, without the ``val/`` prefix or the protocol: ``val/fid2k_val_classifier`` ->
    ``fid``, ``intra_fid/3`` -> ``intra_fid``, ``kid`` -> ``kid``."""
    name = name.removeprefix("val/").split("/")[0]
    named = PROTOCOL_NAMED.fullmatch(name)
    return named["metric"] if named else name


def append_evaluation(path: str | Path, generator_steps: int, values: dict[str, float],
                      protocol: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """Append one evaluation's row to the log at ``path``: ``values`` are keyed as logged (``val/fid``)."""
    row = {"generator_steps": int(generator_steps), **{k: float(v) for k, v in values.items()},
           "protocol": protocol or {}, **extra}
    append_text(path, json.dumps(row) + "\n")
    return row


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The log's rows as written, in order; [] without a log. A line cut short by a kill mid-write is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            log.warning("%s:%d is not a JSON row (a write cut short?); skipped.", path, number)
            continue
        if isinstance(row, dict) and isinstance(row.get("generator_steps"), int):
            rows.append(row)
    return rows


def write_rows(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Replace the log by ``rows`` in one step (a kill mid-write leaves the old log, never half a file)."""
    write_file(path, "".join(json.dumps(row) + "\n" for row in rows))


def evaluations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``{"generator_steps": s, "val/...": value, ...}`` per evaluated step, by step: the rows of a step merged in
    order (a later value replaces an earlier one)."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        step = row["generator_steps"]
        merged = by_step.setdefault(step, {"generator_steps": step})
        merged.update({k: v for k, v in row.items() if k.startswith("val/")})
    return [by_step[step] for step in sorted(by_step)]


def read_evaluations(path: str | Path) -> list[dict[str, Any]]:
    """``evaluations(read_rows(path))``: the run's evaluations from its log."""
    return evaluations(read_rows(path))


def best_values(history: list[dict[str, Any]]) -> dict[str, float]:
    """The best value of every ``val/*`` metric over ``history`` (lowest for ``LOWER_IS_BETTER``, else highest),
    NaN values left out (NaN only when a metric never had another value)."""
    keys = {k for row in history for k in row if k.startswith("val/") and not k.endswith("_std")}
    best = {}
    for key in sorted(keys):
        values = [row[key] for row in history if key in row]
        finite = [v for v in values if not math.isnan(v)] or values
        lower = metric_of(key) in LOWER_IS_BETTER  # val/intra_fid/3: class 3's intra-FID
        best[key] = min(finite) if lower else max(finite)
    return best


def protocols(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The protocol of each metric, as the last row holding it states it: ``{"val/fid": {...}, ...}``."""
    found: dict[str, Any] = {}
    for row in rows:
        found.update({k: row.get("protocol", {}) for k in row if k.startswith("val/")})
    return found


def features_of(logged: list[dict[str, Any]]) -> str:
    """The protocol names of the features a run's numbers were computed on (``effnet_lite0_128_blur2``, without the
    weights' hash), comma-separated; "" for a run without evaluations."""
    names = {protocol["features"].split(":")[0] for protocol in protocols(logged).values() if protocol.get("features")}
    return ", ".join(sorted(names))
