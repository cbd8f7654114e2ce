"""The Teams app manifest is valid against the published 1.22 schema and declares what the code serves:
the bot, commands the core knows, the three message actions the bot answers, and icons of the right size."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jsonschema

from bot.commands import SUBCOMMANDS
from handlers.teams.bot import APPROVAL_COMMAND, CHANGE_ORDER_COMMAND, FEEDBACK_COMMAND, PURPOSES
from tests.conftest import SCHEMAS

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "manifests" / "teams"
SCHEMA = SCHEMAS / "MicrosoftTeams.v1.22.schema.json"


def manifest() -> dict:
    return json.loads((FOLDER / "manifest.json").read_text())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_manifest_is_valid_against_the_teams_1_22_schema() -> None:
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(manifest())
    assert manifest()["manifestVersion"] == "1.22"  # draft-04 does not check the schema's "const"


def test_icons_are_the_sizes_teams_asks_for() -> None:
    icons = manifest()["icons"]
    assert png_size(FOLDER / icons["color"]) == (192, 192)
    assert png_size(FOLDER / icons["outline"]) == (32, 32)


def test_the_bot_and_its_message_actions_are_one_app() -> None:
    m = manifest()
    (bot,) = m["bots"]
    (extension,) = m["composeExtensions"]
    assert extension["botId"] == bot["botId"]
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is True  # the QBR's export: files sent with a consent card in 1:1 chats
    commands = {c["id"]: c for c in extension["commands"]}
    assert set(commands) == set(PURPOSES) == {FEEDBACK_COMMAND, APPROVAL_COMMAND, CHANGE_ORDER_COMMAND}
    for command in commands.values():
        assert command["type"] == "action" and command["context"] == ["message"] and command["fetchTask"]
    assert commands[FEEDBACK_COMMAND]["title"] == "Add as feedback"
    assert commands[APPROVAL_COMMAND]["title"] == "Request approval"
    assert commands[CHANGE_ORDER_COMMAND]["title"] == "Record a change order"


def test_every_listed_command_is_one_the_core_answers() -> None:
    titles = {c["title"] for lst in manifest()["bots"][0]["commandLists"] for c in lst["commands"]}
    # `new` opens a form with the Slack channel set-up; Teams binds an existing channel with `link`.
    assert titles == set(SUBCOMMANDS) - {"new"}
