"""An offline view of training, no W&B needed: loss and metric curves (PNG) and an HTML page with the sample grids.

    python -m ganx.report RUN_DIR            # writes RUN_DIR/report/index.html and curves.png
    python -m ganx.report SWEEP_DIR          # a page per run, plus SWEEP_DIR/report/index.html comparing them

A run dir is what ``python -m ganx.train`` writes (csv/ logs, samples/, evaluations.jsonl, results.json); a sweep dir
holds run dirs.
"""

import argparse
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

from matplotlib.figure import Figure  # the object API: no pyplot state, no global backend switch

from ganx.metrics.evaluations import EVALUATIONS_FILE, evaluations, features_of, read_rows
from ganx.run_files import write_file

# Panels of the per-run figure: a title and the logged keys it overlays (those present are drawn).
PANELS = [
    ("Losses", ["train/d_loss", "train/g_loss"]),
    ("D(x) and D(G(z))", ["train/d_real", "train/d_fake"]),
    ("Critic diagnostics", ["train/wasserstein_estimate", "train/gradient_penalty"]),
    ("FID / KID (lower is better)", ["val/fid", "val/kid"]),
    ("Inception score", ["val/is"]),
    ("Mode coverage", ["val/modes_covered", "val/high_quality"]),
]


class RunLogs(NamedTuple):
    """What a run's page shows from its logs, each file read once (a sweep's page draws from them too)."""
    logged: list[dict[str, Any]]  # the evaluation log's rows (ganx.metrics.evaluations.read_rows)
    series: dict[str, list[tuple[float, float]]]  # read_metrics

    @classmethod
    def read(cls, run_dir: Path) -> "RunLogs":
        logged = read_rows(run_dir / EVALUATIONS_FILE)
        return cls(logged, read_metrics(run_dir, logged))


def read_metrics(run_dir: Path, logged: list[dict[str, Any]] | None = None) -> dict[str, list[tuple[float, float]]]:
    """{key: [(generator step, value), ...]}: the evaluations (val/*) from the rows of the run's evaluation log
    (``logged``: read here when not given, as a notebook calls it), the training curves from every
    csv/version_*/metrics.csv (a resumed run continues its version; runs resumed by older ganx versions have several)."""
    series: dict[str, list[tuple[float, float]]] = {}
    evaluated = evaluations(read_rows(run_dir / EVALUATIONS_FILE) if logged is None else logged)
    for row in evaluated:
        for key, value in row.items():
            if key.startswith("val/"):
                series.setdefault(key, []).append((float(row["generator_steps"]), value))
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[-1])):
        with path.open() as f:
            for row in csv.DictReader(f):
                step = float(row["step"])
                for key, value in row.items():
                    if key != "step" and value not in ("", None) and not (evaluated and key.startswith("val/")):
                        series.setdefault(key, []).append((step, float(value)))
    return series


def plot_run(series: dict[str, list[tuple[float, float]]], out: Path, title: str) -> Path | None:
    panels = [(name, [k for k in keys if k in series]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(5 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    # The rows x cols grid can have more axes than panels: the spare ones are switched off below.
    for ax, (name, keys) in zip(axes.flat, panels, strict=False):
        for key in keys:
            steps, values = zip(*series[key], strict=True)
            ax.plot(steps, values, label=key.split("/", 1)[1], marker="o" if len(steps) < 30 else None, ms=3)
        ax.set_title(name)
        ax.set_xlabel("step (generator updates)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, out)
    return out


def save_figure(fig, path: Path) -> None:
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    write_file(path, png.getvalue())


def is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("csv", "samples", "results.json", EVALUATIONS_FILE))


def run_page(run_dir: Path, logs: RunLogs | None = None) -> Path:
    """Write run_dir/report/{curves.png,index.html} (from ``logs``, else from the run's files); return the page."""
    logs = logs or RunLogs.read(run_dir)
    out = run_dir / "report"
    out.mkdir(exist_ok=True)
    results = json.loads((run_dir / "results.json").read_text()) if (run_dir / "results.json").is_file() else {}
    title = results.get("run_name") or run_dir.name
    curves = plot_run(logs.series, out / "curves.png", f"{title} ({run_dir.name})")
    body = [f"<h1>{html.escape(title)}</h1>", f"<p>{html.escape(str(run_dir.resolve()))}</p>"]
    scored_on = features_of(logs.logged)
    if scored_on:
        body.append(f"<p>Metrics computed on: <code>{html.escape(scored_on)}</code> features (numbers compare only "
                    "within one protocol)</p>")
    if results:
        body.append("<h2>Results</h2><pre>" + html.escape(json.dumps(
            {k: results[k] for k in ("status", "error", "generator_steps", "wall_time_s", "final", "best", "overrides")
             if k in results}, indent=2)) + "</pre>")
    body.append('<h2>Curves</h2><img src="curves.png">' if curves else "<p>No logged metrics (logger=none?).</p>")
    grids = sorted((run_dir / "samples").glob("*.png"))
    body.append("<h2>Samples over training (fixed noise)</h2>")
    body += [f'<figure><img src="../samples/{g.name}" style="max-width:420px"><figcaption>{g.stem}</figcaption>'
             "</figure>" for g in grids] or ["<p>No sample grids.</p>"]
    page = out / "index.html"
    write_file(page, _html(title, body))
    return page


def sweep_page(sweep_dir: Path, runs: list[Path]) -> Path:
    from ganx.sweep import collect_results

    out = sweep_dir / "report"
    out.mkdir(exist_ok=True)
    logs = {run: RunLogs.read(run) for run in runs}
    pages = [run_page(run, logs[run]) for run in runs]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    plotted = False
    for run in runs:
        fid = logs[run].series.get("val/fid")
        if fid:
            ax.plot(*zip(*fid, strict=True), marker="o", ms=3, label=run.name)
            plotted = True
    if plotted:
        ax.set_xlabel("step (generator updates)")
        ax.set_ylabel("val/fid")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / "fid.png")
    rows = collect_results(sweep_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    header = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    table = [f"<div class=wide><table border=1 cellpadding=4><tr>{header}</tr>"]
    for row in rows:
        cells = [f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)) for v in (row.get(c, "") for c in columns)]
        table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    table.append("</table></div>")
    body = [f"<h1>Sweep {html.escape(sweep_dir.name)}</h1>", *table]
    if plotted:
        body.append('<h2>FID over training</h2><img src="fid.png">')
    body.append("<h2>Runs</h2><ul>" + "".join(
        f'<li><a href="../{p.parent.parent.name}/report/index.html">{html.escape(p.parent.parent.name)}</a></li>'
        for p in pages) + "</ul>")
    page = out / "index.html"
    write_file(page, _html(f"Sweep {sweep_dir.name}", body))
    return page


# The page fits its window (tests/test_report.py opens it in a browser): the curves figure is wider than a laptop's
# window and is scaled down, long overrides wrap, a sweep's table with many metrics scrolls on its own.
STYLE = ("body{font-family:sans-serif;margin:2em} figure{display:inline-block;margin:4px} img{max-width:100%}"
         " pre{white-space:pre-wrap} .wide{overflow-x:auto}")


def _html(title: str, body: list[str]) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def report(path: Path) -> Path:
    if not path.is_dir():
        raise SystemExit(f"ganx.report: {path} is not a directory (give a run dir or a sweep dir).")
    if is_run_dir(path):
        return run_page(path)
    runs = sorted(p for p in path.iterdir() if p.is_dir() and is_run_dir(p))
    if not runs:
        raise SystemExit(f"ganx.report: {path} holds no ganx run (no csv/, samples/ or results.json in it or below).")
    return sweep_page(path, runs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ganx.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run dir or a sweep dir")
    page = report(parser.parse_args(argv).path)
    print(f"wrote {page}")


if __name__ == "__main__":
    main()
