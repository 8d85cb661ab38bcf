"""benchmarks.startup times a command's lines as they arrive and reports medians; its structure only, never its
numbers."""

import sys

from helpers import REPO

from benchmarks.startup import medians, table, time_lines

PRINTS = "import time; print('composed', flush=True); time.sleep(0.05); print('Training x', flush=True)"


def test_a_command_is_timed_to_its_first_line_its_training_line_and_its_exit():
    timed = time_lines([sys.executable, "-c", PRINTS], REPO)
    assert timed["first_line"] == "composed"
    assert 0 < timed["first_line_s"] < timed["training_line_s"] <= timed["exit_s"]
    assert time_lines([sys.executable, "-c", "print('no training')"], REPO)["training_line_s"] is None


def test_the_table_holds_each_commands_medians_and_a_dash_where_a_run_lacked_a_line():
    runs = [{"first_line_s": s, "training_line_s": None if s == 3 else s + 1, "exit_s": s + 2, "first_line": f"line {s}"}
            for s in (1, 3, 2)]
    row = medians(runs)
    assert row == {"first_line": "line 1", "first_line_s": 2, "training_line_s": None, "exit_s": 4}
    assert table({"one step": row}).splitlines() == [
        "| command | first line (s) | `Training` line (s) | exit (s) |", "|---|---|---|---|",
        "| `one step` | 2.00 | - | 4.00 |"]
