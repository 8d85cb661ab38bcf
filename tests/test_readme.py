"""The README's commands run as written: every ``python -m ganx.<command>`` it shows uses keys and config options that
exist. Training commands are composed by Hydra and pass ganx's pre-flight config check (no data, no training); the
other commands' keys are checked against their argument schemas. A renamed key or a deleted preset fails here. The
``python -m ganx.train`` commands of experiments/*/README.md (the record of how each run was made) are composed the same
way, and a command block that says its run was float32 must pin ``trainer.precision=32-true`` (the default is auto)."""

import re
import shlex

import pytest
from helpers import REPO
from hydra.errors import MissingConfigException

from ganx.evaluate import EvaluateConfig
from ganx.preflight import ConfigError, check_train_config
from ganx.presets import compose_train
from ganx.sample import SampleConfig
from ganx.translate import TranslateConfig

SCHEMAS = {"sample": SampleConfig, "evaluate": EvaluateConfig, "translate": TranslateConfig}


def readme_commands() -> list[str]:
    """``python -m ganx.X ...`` commands from the README's code blocks and inline code, comments stripped; commands
    with a placeholder for several arguments (``...``, ``[same overrides]``) are left out."""
    text = (REPO / "README.md").read_text()
    snippets = re.findall(r"```bash\n(.*?)```", text, flags=re.S) + re.findall(r"`([^`\n]+)`", text)
    commands = []
    for snippet in snippets:
        for line in snippet.splitlines():
            match = re.search(r"python -m ganx\.(\w+)(.*)", line)
            if not match:
                continue
            args = match.group(2).split("  #")[0].split(" # ")[0].strip()
            if "..." in args or "[" in args.replace("metrics=[", ""):
                continue
            commands.append(f"{match.group(1)} {args}".strip())
    return sorted(set(commands))


def experiment_train_commands() -> list[tuple[str, str, str]]:
    """``(readme, command, its code block)`` for each ``python -m ganx.train`` command in experiments/*/README.md:
    code-block lines joined across ``\\`` continuations, comments stripped, ``$DATA`` as the first data set the README
    loops over (mode_collapse); commands with ``...`` are left out."""
    found = []
    for readme in sorted((REPO / "experiments").glob("*/README.md")):
        text = readme.read_text()
        blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
        snippets = [(b.replace("\\\n", " "), b) for b in blocks] + [(s, s) for s in re.findall(r"`([^`\n]+)`", text)]
        for snippet, block in snippets:
            for line in snippet.splitlines():
                match = re.search(r"python -m ganx\.train (.*)", line)
                if not match or "..." in match.group(1):
                    continue
                args = match.group(1).split("  #")[0].split(" # ")[0].replace("$DATA", "gaussian_ring")
                found.append((readme.parent.name, " ".join(args.split()), block))
    return found


EXPERIMENT_COMMANDS = experiment_train_commands()


def first_of_each_sweep(args: list[str]) -> list[str]:
    """A multirun's first job: ``-m`` dropped and ``key=a,b,c`` -> ``key=a`` (list values in [] are kept)."""
    return [re.sub(r"=([^\[,]*),.*", r"=\1", a) for a in args if a != "-m"]


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_kind():
    kinds = {c.split()[0] for c in COMMANDS}
    assert {"train", "sample", "evaluate", "translate", "report"} <= kinds, kinds
    assert len([c for c in COMMANDS if c.startswith("train")]) >= 15


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("train")])
def test_readme_train_command_composes_and_passes_the_config_check(command: str):
    args = [a for a in shlex.split(command)[1:] if not a.startswith(("--help", "--cfg", "-sc"))]
    if "job" in args:  # `--cfg job model=gan`: the flag's value
        args.remove("job")
    if any(re.fullmatch(r"[\w.]+=[A-Z_]+", a) for a in args):  # experiment=NAME: a placeholder
        pytest.skip(f"{command}: a placeholder value")
    overrides = [a.replace("<run>", "outputs/run").replace("<more>", "10") for a in first_of_each_sweep(args)]
    cfg = compose_train(overrides)
    check_train_config(cfg)


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.split()[0] in SCHEMAS])
def test_readme_command_uses_only_its_commands_keys(command: str):
    name, *args = shlex.split(command)
    keys = {a.split("=", 1)[0] for a in args if "=" in a}
    if name == "sample":  # class= is ganx.sample's spelling of its `label` field (a Python keyword)
        keys = {"label" if k == "class" else k for k in keys}
    assert keys <= set(SCHEMAS[name].__dataclass_fields__), f"{command}: unknown {keys - set(SCHEMAS[name].__dataclass_fields__)}"


def test_a_wrong_key_in_a_command_is_caught():
    # The checks above can fail: a misspelt key or preset is refused by the same calls.
    with pytest.raises(ConfigError, match="stepz"):
        check_train_config(compose_train(["+stepz=3"]))
    with pytest.raises(MissingConfigException, match="dcgann"):
        compose_train(["model=dcgann"])


def test_the_experiment_readmes_commands_are_found():
    readmes = {readme for readme, _, _ in EXPERIMENT_COMMANDS}
    assert {"dcgan_anime", "cyclegan_emoji", "conditional", "mode_collapse"} <= readmes, readmes
    assert len(EXPERIMENT_COMMANDS) >= 15


@pytest.mark.parametrize(("readme", "command"), sorted({(r, c) for r, c, _ in EXPERIMENT_COMMANDS}))
def test_experiment_readme_train_command_composes_and_passes_the_config_check(readme: str, command: str):
    """A renamed preset or key, or an experiment config removed, fails here before a reader reruns the record."""
    overrides = [a.replace("<run>", "outputs/run").replace("<dir>", "outputs/run")
                 for a in first_of_each_sweep(shlex.split(command)) if not a.startswith("hydra.")]
    check_train_config(compose_train(overrides))


def test_an_experiment_block_that_says_float32_pins_it():
    """The default precision is auto (bf16 where it pays, since 2026-12-02): a command recorded for a float32 run
    reproduces it only with trainer.precision=32-true."""
    unpinned = [f"{readme}: {command}" for readme, command, block in EXPERIMENT_COMMANDS
                if re.search(r"float32|fp32", block) and "trainer.precision=32-true" not in command]
    assert not unpinned, f"float32 runs whose command does not say trainer.precision=32-true: {unpinned}"
