"""What a user can fix and how the commands report it: one line naming the key, the value and the fix.

``ConfigError`` is raised where the bad value enters (a constructor, a check before training) and names the key as the
user types it (``model.critic_steps``); a plain ``ValueError`` subclass, so code that builds ganx's classes directly
still catches what it always caught.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class ConfigError(ValueError):
    """A ganx setting that is unknown or has a value ganx cannot use."""


def check_whole_number(key: str, value: Any, minimum: int = 1, meaning: str = "") -> None:
    """Refuse ``value`` unless it is an int >= ``minimum`` (not a bool, a float or a string Hydra let through);
    ``meaning`` says what the number counts, e.g. " (critic steps between penalties)"."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key} must be a whole number >= {minimum}{meaning}, got {value!r}.")


@contextmanager
def ctrl_c_exits(command: str) -> Iterator[None]:
    """Ctrl-C inside the block (a command's start-up: importing torch and Lightning, building the run) ends the
    command with one line and exit code 130 (128 + SIGINT, as for a Ctrl-C during training), instead of a
    KeyboardInterrupt traceback through library code; ``HYDRA_FULL_ERROR=1`` keeps the traceback."""
    try:
        yield
    except KeyboardInterrupt:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{command}: stopped by Ctrl-C before training began; nothing was saved.", file=sys.stderr)
        raise SystemExit(130) from None
