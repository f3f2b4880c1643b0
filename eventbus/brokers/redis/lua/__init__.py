"""The Redis backend's Lua scripts, one ``NAME.lua`` file each, read once when a module imports them.

A line ``-- #include OTHER`` stands for the text of ``OTHER.lua``: scripts that share the ledger's
write code (``ledger_apply``, ``ack_many``) include its fragments. Files named ``dispatch_*`` are
spliced into Dramatiq's own dispatch script (see ``eventbus.brokers.redis.broker`` and ``.recovery``).
"""

from __future__ import annotations

import re
from importlib.resources import files

_INCLUDE = re.compile(r"^-- #include (\w+)\n", re.MULTILINE)


def load(name: str) -> str:
    """The text of ``NAME.lua``, its ``-- #include`` lines replaced by the files they name."""
    text = files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda m: load(m.group(1)), text)
