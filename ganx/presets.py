"""The shipped configs (``conf/``): where they are, composing ``train`` or one data preset outside a Hydra app, and
what class a preset builds."""

import functools
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ganx.resolvers import register_resolvers

# The configs: the repo's top-level conf/, shipped in the wheel as ganx/conf (pyproject.toml maps the package ganx.conf
# to conf/); a source checkout or an editable install (``pip install -e .``) reads the repo's conf/ itself.
_PACKAGED_CONF_DIR = Path(__file__).resolve().parent / "conf"
CONF_DIR = _PACKAGED_CONF_DIR if _PACKAGED_CONF_DIR.is_dir() else Path(__file__).resolve().parents[1] / "conf"


@functools.cache  # a composition takes ~0.3 s; the presets do not change while a process runs
def preset_target(group: str, name: str) -> str | None:
    """The ``_target_`` of the preset ``conf/<group>/<name>.yaml`` as Hydra composes it (``train`` with
    ``<group>=<name>``, so presets that extend others resolve as in a run: model=lsgan extends dcgan); None if it
    has none."""
    return compose_train([f"{group}={name}"])[group].get("_target_")


def compose_train(overrides: list[str]) -> DictConfig:
    """The ``train`` config composed with ``overrides``, unresolved; inside a running Hydra app (``ganx.train``) with
    the app's Hydra, else with ``conf/``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def preset_classes(group: str) -> Iterator[tuple[str, type]]:
    """(name, class) of every preset in ``conf/<group>/`` that names a ``_target_``."""
    from hydra.utils import get_class

    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        target = preset_target(group, path.stem)
        if target is not None:
            yield path.stem, get_class(target)


def compose_data_config(name: str, overrides: list[str] = ()) -> DictConfig:
    """``conf/data/<name>.yaml`` with ``data.key=value`` overrides, composed and resolved as ``ganx.train`` would,
    for commands that are not Hydra apps (evaluate, classifier). Unknown names or keys exit with Hydra's message."""
    from hydra.errors import HydraException

    register_resolvers()
    try:
        cfg = compose_train([f"data={name}", *overrides])
    except HydraException as err:
        raise SystemExit(str(err).splitlines()[0]) from None
    return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
