"""``python -m ganx.train --help``: the config groups with their options and the top-level keys with their comments, read
from ``conf/`` as text (no Hydra composition, no torch: it answers in a fraction of a second). The full composed
config is Hydra's ``--cfg job``."""

import re
import textwrap
from pathlib import Path

from ganx.presets import CONF_DIR

HEADER = """\
ganx.train: train a GAN. Pick presets with group=option (the groups below) and set any key with key=value.
ckpt=PATH resumes a run (ckpt=auto: from the run dir's checkpoints/last.ckpt if there is one, else a new run).
Devices: trainer.accelerator= and trainer.devices= (trainer=cpu|gpu|ddp presets), or the shorthand
device=auto|cpu|cuda|cuda:N|mps of the other ganx commands."""

FOOTER = """\
Every key of the composed config can be set too (model.latent_dim=64, data.batch_size=32,
trainer.max_time=00:00:10:00); +key=value adds one, ~key removes one.
  python -m ganx.train --cfg job [overrides]   the full composed config, as the run would get it
  python -m ganx.train -m key=a,b ...          a sweep (multirun): one job per combination, and a summary table
  python -m ganx.train --hydra-help            Hydra's own flags (--info, -sc install=bash for tab completion)"""

WIDTH = 118
_DEFAULT = re.compile(r"^\s+-\s+(?:optional\s+)?([\w/]+):\s*(\S+)\s*(?:#\s*(.*))?$")  # "  - model: dcgan  # ..."
_KEY = re.compile(r"^([A-Za-z_]\w*):\s*(.*?)\s*(?:\s#\s*(.*))?$")  # "steps: 2000  # ..."


def train_defaults(conf_dir: Path = CONF_DIR) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str, str]]]:
    """From ``conf/train.yaml``: each group of its defaults list with (default option, the comment on its line), and
    each top-level key with (value, its comment: the comment lines just above it and the one on its line)."""
    groups: dict[str, tuple[str, str]] = {}
    keys: list[tuple[str, str, str]] = []
    comment: list[str] = []
    in_defaults = False
    for line in (conf_dir / "train.yaml").read_text().splitlines():
        if not line.strip():
            comment = []
        elif line.lstrip().startswith("#"):
            comment.append(line.lstrip().lstrip("#").strip())
        elif in_defaults and line.startswith(" "):
            found = _DEFAULT.match(line)
            if found:
                groups[found[1]] = (found[2], found[3] or "")
            comment = []
        elif found := _KEY.match(line):
            in_defaults = found[1] == "defaults"
            if not in_defaults:
                keys.append((found[1], found[2], " ".join([*comment, found[3] or ""]).strip()))
            comment = []
    return groups, keys


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """Every config group (a folder of ``conf/`` holding presets, ``model/ema`` for nested ones) and its options (the
    file names), sorted; Hydra's own settings (``conf/hydra``) are not a choice."""
    found: dict[str, list[str]] = {}
    for path in sorted(conf_dir.rglob("*.yaml")):
        group = path.parent.relative_to(conf_dir).as_posix()
        if group != "." and group.split("/")[0] != "hydra":
            found.setdefault(group, []).append(path.stem)
    return found


def _wrapped(label: str, text: str, indent: int) -> str:
    return textwrap.fill(text, WIDTH, initial_indent=f"  {label:<{indent - 2}}", subsequent_indent=" " * indent,
                         break_on_hyphens=False)


def train_help(conf_dir: Path = CONF_DIR) -> str:
    """The text of ``python -m ganx.train --help``."""
    defaults, keys = train_defaults(conf_dir)
    options = group_options(conf_dir)
    indent = max(len(group) for group in options) + 4
    lines = [HEADER, "", f"Config groups (group=option; * marks the default; the files are {conf_dir}/<group>/<option>.yaml):"]
    for group, names in options.items():
        default, comment = defaults.get(group, (None, ""))
        listed = ", ".join(f"{name}*" if name == default else name for name in names)
        lines.append(_wrapped(group, listed + (f"  ({comment})" if comment else ""), indent))
    lines += ["", "Keys (key=value; shown with their defaults, from conf/train.yaml):"]
    for key, value, comment in keys:
        lines.append(f"  {key}={value}")
        if comment:
            lines.append(textwrap.fill(comment, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join([*lines, "", FOOTER])
