"""The ``key=value`` command line of the side commands (sample, evaluate, translate, features): parsing into a
dataclass, ``--help`` from the fields' comments, deprecated keys, and the ``device=`` they share."""

import ast
import dataclasses
import inspect
import io
import os
import sys
import textwrap
import tokenize
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def parse_cli(schema: type[T], argv: list[str] | None, command: str, renamed: Mapping[str, str] | None = None) -> T:
    """Parse ``key=value`` arguments into the dataclass ``schema``; unknown keys and missing values exit with a
    message listing the valid keys. ``--help`` prints the command's docstring and every key with its default and
    meaning (the comment on its field). ``renamed`` maps deprecated keys to their new names (``renamed_keys``)."""
    argv = sys.argv[1:] if argv is None else argv
    if help_asked(argv):
        print(cli_help(schema))
        raise SystemExit(0)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.from_cli(renamed_keys(argv, renamed or {}, command)))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as err:
        keys = ", ".join(f"{k}=" for k in schema.__dataclass_fields__)
        raise SystemExit(f"{command}: {str(err).splitlines()[0]}. Arguments are {keys} (--help explains them)") from None


def renamed_keys(argv: list[str], renamed: Mapping[str, str], command: str) -> list[str]:
    """``argv`` with deprecated keys (``old=value``) under their new names, with a one-line notice on stderr for each;
    old names keep working for one release, so scripts written for it (SLURM jobs) still run. Both names given
    together are refused: which one wins would be an accident of the order."""
    given = {arg.partition("=")[0] for arg in argv}
    for old, new in renamed.items():
        if old in given and new in given:
            raise SystemExit(f"{command}: {old}= and {new}= both given; {old}= is the deprecated name of {new}=, give "
                             f"only {new}=.")
    result = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in renamed:
            print(f"{command}: {key}= is deprecated and will be removed in the next release; use {renamed[key]}=",
                  file=sys.stderr)
            arg = f"{renamed[key]}={value}"
        result.append(arg)
    return result


def field_comments(schema: type) -> dict[str, str]:
    """The comment on the line of each field of the dataclass ``schema``: how ganx documents a CLI key, read from the
    source so the help and the code cannot drift apart."""
    source = textwrap.dedent(inspect.getsource(schema))
    return _field_comments(ast.parse(source).body[0], _comments(source))


def _comments(source: str) -> dict[int, str]:
    """The text of each comment in ``source``, by line number."""
    return {token.start[0]: token.string.lstrip("#").strip()
            for token in tokenize.generate_tokens(io.StringIO(source).readline) if token.type == tokenize.COMMENT}


def _field_comments(class_node: ast.ClassDef, comments: dict[int, str]) -> dict[str, str]:
    return {node.target.id: comments.get(node.end_lineno, "") for node in class_node.body
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}


def cli_value(value: Any) -> str:
    """``value`` as it is written on a ``key=value`` command line: null, true, [a,b]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return f"[{','.join(cli_value(v) for v in value)}]"
    return str(value)


def cli_help(schema: type) -> str:
    """``--help`` of a ``key=value`` command: its module docstring, then every key (nested dataclasses as
    ``group.key``) with its default and meaning."""
    def rows(cls: type, prefix: str) -> Iterator[tuple[str, str]]:
        comments = field_comments(cls)
        for f in dataclasses.fields(cls):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if dataclasses.is_dataclass(default):
                yield from rows(type(default), f"{prefix}{f.name}.")
                continue
            yield _key_row(f"{prefix}{f.name}", default), comments.get(f.name, "")

    return _help_text(sys.modules[schema.__module__].__doc__ or "", list(rows(schema, "")))


def _key_row(key: str, default: Any) -> str:
    return f"{key}={'(required)' if default == '???' else cli_value(default)}"


def _help_text(doc: str, table: list[tuple[str, str]]) -> str:
    width = max(len(key) for key, _ in table) + 2
    keys = "\n".join(f"  {key:<{width}}{meaning}".rstrip() for key, meaning in table)
    return f"{doc.strip()}\n\nKeys (key=value; shown with their defaults):\n{keys}"


def source_help(path: str | Path, schema: str) -> str | None:
    """``cli_help`` of the dataclass named ``schema`` in the module file ``path``, read from its source without
    importing it (the commands import torch, seconds): for ``--help`` before the imports. None when a default is not a
    literal (a nested dataclass: ``cli_help`` then needs the import)."""
    source = Path(path).read_text()
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == schema)
    comments = _field_comments(node, _comments(source))
    table = []
    for field_node in node.body:
        if not (isinstance(field_node, ast.AnnAssign) and isinstance(field_node.target, ast.Name)):
            continue
        default = field_node.value
        if isinstance(default, ast.Call):  # field(default_factory=lambda: [...])
            factory = next((k.value for k in default.keywords if k.arg == "default_factory"), None)
            if not isinstance(factory, ast.Lambda):
                return None
            default = factory.body
        try:
            value = ast.literal_eval(default)
        except ValueError:
            return None
        table.append((_key_row(field_node.target.id, value), comments.get(field_node.target.id, "")))
    return _help_text(ast.get_docstring(tree, clean=False) or "", table)


def help_asked(argv: list[str]) -> bool:
    return "--help" in argv or "-h" in argv


def help_before_imports(module_name: str, command: str, text: Callable[[], str | None]) -> None:
    """Print ``text()`` and exit when this process is ``command`` (``python -m ganx.x``, or its console script
    ``ganx-x``) asked for ``--help``; a module calls this before it imports torch, so the help answers in a fraction
    of a second. Imported as a library (``module_name`` is not ``__main__``), or ``text()`` is None: nothing."""
    script = Path(sys.argv[0]).name
    if (module_name == "__main__" or script == command.replace(".", "-")) and help_asked(sys.argv[1:]):
        answer = text()
        if answer is not None:
            print(answer)
            raise SystemExit(0)


def missing_dependency(command: str, err: ImportError, needed_for: str = "this command") -> str:
    """The one line a command prints for ``err``, a dependency that is not installed: what to install. ``err`` is
    raised again when it is ganx's own (a bug), or when HYDRA_FULL_ERROR=1 asks for the traceback. An ImportError
    without a module name is ganx's own message of what to install (a pretrained network's weight package)."""
    missing = (err.name or "").partition(".")[0]
    if missing == "ganx" or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    if not missing:
        return f"{command}: {err}"
    return (f"{command}: {missing} is not installed, and {needed_for} needs it ({err}). Install ganx with its "
            "dependencies: make install in the repo, or pip install -e . (HYDRA_FULL_ERROR=1 shows the traceback)")


def resolve_device(name: str) -> "torch.device":
    """``device=`` of the commands that run a model on one device: ``auto`` (CUDA if available, else the CPU),
    ``cpu``, ``cuda``, ``cuda:N`` or ``mps``; one that this machine lacks is refused with the ones it has."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={name} is not a device: use auto, cpu, cuda, cuda:N or mps.")
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    present = (device.type == "cpu" or (device.type == "cuda" and (device.index or 0) < cuda_count)
               or (device.type == "mps" and torch.backends.mps.is_available()))
    if not present:
        available = ["cpu", *(f"cuda:{i}" for i in range(cuda_count)), *(["mps"] if torch.backends.mps.is_available() else [])]
        raise ValueError(f"device={name} is not available on this machine (it has {', '.join(available)}); "
                         "use device=auto or one of those.")
    return device


def split_group_overrides(argv: list[str], group: str) -> tuple[list[str], list[str]]:
    """Split ``group.key=value`` arguments (Hydra overrides of a config group) from the others."""
    grouped = [a for a in argv if a.startswith(f"{group}.")]
    return grouped, [a for a in argv if not a.startswith(f"{group}.")]
