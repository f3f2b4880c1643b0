"""The Redis backend's Lua files: they load, their includes resolve, and they agree with the Python side."""

from __future__ import annotations

from importlib.resources import files

from eventbus.brokers.redis.lua import load
from eventbus.ledger import HISTORY_CODES


def test_every_lua_file_loads_with_its_includes_resolved():
    # Given every .lua file the package ships
    names = [
        p.name.removesuffix(".lua") for p in files("eventbus.brokers.redis.lua").iterdir() if p.name.endswith(".lua")
    ]
    assert "ack_many" in names
    # When each is loaded
    texts = {name: load(name) for name in names}
    # Then no include is left unresolved, and the scripts that share the ledger's code contain it
    assert not any("-- #include" in text for text in texts.values())
    for script in ("ledger_apply", "ack_many"):
        assert texts["ledger_prelude"] in texts[script]
        assert texts["ledger_epilogue"] in texts[script]


def test_the_ledger_scripts_write_the_history_codes_of_eventbus_ledger():
    # Given the history codes the Python side reads records with
    table = ", ".join(f'{state} = "{letter}"' for state, letter in HISTORY_CODES.items())
    # Then the Lua side writes the same ones
    assert f"local code = {{{table}}}" in load("ledger_prelude")
