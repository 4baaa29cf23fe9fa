"""Block Kit of an incident on its parent Slack message: the buttons (Acknowledge, Resolve,
Silence 1 h / 4 h / 1 day, End silence) and the line saying its state and who acted.

Pure functions, no I/O, no clock; texts are cut with messages.py's helpers, so every block keeps
Slack's limits whatever the incident's key, title or actor.

Keys in values: a button's ``value`` carries the incident key (not the database id: a key is what
the parent message was posted for, and it survives a database restore). Slack limits a button
value to 2000 characters and a select option's value to 150. Keys are short in practice
(``<fingerprint>@<startsAt>``), but a label-grouping key (``label=value,…``) can be long, so:

- a button carries the key itself up to ``MAX_KEY_IN_BUTTON`` characters, else
  ``sha256:<hex of the key's UTF-8>`` (``hashed_key``);
- a silence option carries ``<key>|<duration>`` when that fits 150, else
  ``sha256:<hex>|<duration>``. The handler turns such a hash back into the key with the
  Acknowledge/Resolve button of the same message (Slack sends the message with the click), see
  ``key_from_message``. Only a key over ``MAX_KEY_IN_BUTTON`` reaches ``find()`` hashed, so
  ``find()`` must accept ``sha256:<hex>`` as well as the key for those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

from .incidents.records import SYSTEM_ACTOR, Incident
from .messages import (
    DASH,
    MAX_BLOCKS,
    MAX_CONTEXT_TEXT,
    MAX_TEXT,
    RESOLVED_STYLE,
    JsonObject,
    escape_mrkdwn,
    severity_style,
    slack_length,
    truncate_mrkdwn,
)

ACKNOWLEDGE: Final = "lumen.incident.acknowledge"
RESOLVE: Final = "lumen.incident.resolve"
SILENCE: Final = "lumen.incident.silence"
END_SILENCE: Final = "lumen.incident.end_silence"
INCIDENT_ACTION_IDS: Final = frozenset({ACKNOWLEDGE, RESOLVE, SILENCE, END_SILENCE})

# Our blocks are known again by their block_id prefix, to be replaced on the next update. The
# incident's version is appended: Slack asks for a new block_id when a message's block changes.
BLOCK_ID_PREFIX: Final = "lumen.incident."
ACTIONS_BLOCK_ID: Final = BLOCK_ID_PREFIX + "actions"
STATE_BLOCK_ID: Final = BLOCK_ID_PREFIX + "state"

# https://docs.slack.dev/reference/block-kit/block-elements and .../composition-objects
MAX_BUTTON_VALUE: Final = 2000
MAX_OPTION_VALUE: Final = 150
MAX_ACTION_ID: Final = 255
MAX_BLOCK_ID: Final = 255
MAX_BUTTON_TEXT: Final = 75
MAX_ACTIONS_ELEMENTS: Final = 25
# Room below Slack's 2000, should a button ever carry more than the key.
MAX_KEY_IN_BUTTON: Final = 1900
HASH_PREFIX: Final = "sha256:"
VALUE_SEPARATOR: Final = "|"

# The Silence menu: value suffix -> (shown text, duration). The same suffixes as
# incidents.actions.SILENCE_DURATIONS.
SILENCE_CHOICES: Final[Mapping[str, tuple[str, timedelta]]] = MappingProxyType(
    {
        "1h": ("1 hour", timedelta(hours=1)),
        "4h": ("4 hours", timedelta(hours=4)),
        "1d": ("1 day", timedelta(days=1)),
    }
)

_STATE_NAMES: Final = {
    "triggered": "Triggered",
    "acknowledged": "Acknowledged",
    "silenced": "Silenced",
    "resolved": "Resolved",
}


# --- keys in values ------------------------------------------------------------------------------


def hashed_key(incident_key: str) -> str:
    """``sha256:<hex>`` of the key: what a value carries when the key itself is too long."""
    return HASH_PREFIX + hashlib.sha256(incident_key.encode("utf-8", "surrogatepass")).hexdigest()


def button_value(incident_key: str) -> str:
    """The key, or its hash when it does not fit a button (see the module docstring)."""
    if slack_length(incident_key) <= MAX_KEY_IN_BUTTON:
        return incident_key
    return hashed_key(incident_key)


def silence_value(incident_key: str, duration: str) -> str:
    """``<key>|<duration>``, with the key hashed when the whole does not fit an option."""
    value = f"{incident_key}{VALUE_SEPARATOR}{duration}"
    if slack_length(value) <= MAX_OPTION_VALUE:
        return value
    return f"{hashed_key(incident_key)}{VALUE_SEPARATOR}{duration}"


def parse_silence_value(value: str) -> tuple[str, str] | None:
    """(key or ``sha256:<hex>``, duration) of a silence option's value; None when malformed.
    Split at the last ``|``: a label value in the key may contain one, a duration never does."""
    key, separator, duration = value.rpartition(VALUE_SEPARATOR)
    if not separator or not key or duration not in SILENCE_CHOICES:
        return None
    return key, duration


def key_from_message(value: str, message: Mapping[str, Any] | None) -> str:
    """The full key behind a hashed ``value``, found on the buttons of ``message`` (the message
    Slack sends with a click); ``value`` itself when it is no hash or nothing matches."""
    if not value.startswith(HASH_PREFIX) or not message:
        return value
    blocks = message.get("blocks")
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict) or block.get("type") != "actions":
            continue
        elements = block.get("elements")
        for element in elements if isinstance(elements, list) else []:
            candidate = element.get("value") if isinstance(element, dict) else None
            if (
                isinstance(candidate, str)
                and not candidate.startswith(HASH_PREFIX)
                and hashed_key(candidate) == value
            ):
                return candidate
    return value


# --- blocks --------------------------------------------------------------------------------------


def incident_buttons(
    incident_key: str,
    *,
    acknowledged: bool = False,
    silenced: bool = False,
    version: int = 0,
) -> JsonObject:
    """The actions block of a parent message: Acknowledge (primary; left out once someone has),
    Resolve (asks to confirm), and the Silence menu, or End silence while silenced."""
    key = button_value(incident_key)
    elements: list[JsonObject] = []
    if not acknowledged:
        elements.append(_button(ACKNOWLEDGE, "Acknowledge", key, style="primary"))
    resolve = _button(RESOLVE, "Resolve", key)
    # Resolving is final (a re-fire opens a new incident): one click too many is cheap.
    resolve["confirm"] = {
        "title": _plain("Resolve this incident?"),
        "text": _plain("It stays resolved even if its alerts still fire."),
        "confirm": _plain("Resolve"),
        "deny": _plain("Cancel"),
    }
    elements.append(resolve)
    if silenced:
        elements.append(_button(END_SILENCE, "End silence", key))
    else:
        elements.append(
            {
                "type": "static_select",
                "action_id": SILENCE,
                "placeholder": _plain("Silence\N{HORIZONTAL ELLIPSIS}"),
                "options": [
                    {"text": _plain(f"Silence {shown}"), "value": silence_value(incident_key, d)}
                    for d, (shown, _duration) in SILENCE_CHOICES.items()
                ],
            }
        )
    return {"type": "actions", "block_id": f"{ACTIONS_BLOCK_ID}.{version}", "elements": elements}


def incident_state_texts(incident: Incident) -> list[str]:
    """The state line(s), in mrkdwn: who acted and when."""
    texts: list[str] = []
    acked = f"Acknowledged by {_who(incident.acknowledged_by)}{_at(incident.acknowledged_at)}"
    if incident.state == "triggered":
        texts.append(f"*Triggered* {DASH} nobody has acknowledged it yet")
    elif incident.state == "acknowledged":
        texts.append(f"*{acked}*")
    elif incident.state == "silenced":
        until = f" until {_clock(incident.silenced_until)}" if incident.silenced_until else ""
        texts.append(f"*Silenced by {_who(incident.silenced_by)}{until}*")
        if incident.acknowledged_by:
            texts.append(acked)
    else:
        if incident.resolved_by in (None, SYSTEM_ACTOR):
            text = f"*Resolved*{_at(incident.resolved_at)}: every alert resolved"
        else:
            text = f"*Resolved by {_who(incident.resolved_by)}{_at(incident.resolved_at)}*"
            if incident.resolved_while_firing:
                text += " (alerts still firing)"
        texts.append(text)
        if incident.acknowledged_by:
            texts.append(acked)
    return texts


def incident_state_block(incident: Incident) -> JsonObject:
    """A context block: "Acknowledged by X at …", "Resolved by X … (alerts still firing)",
    "Silenced by X until …"."""
    return {
        "type": "context",
        "block_id": f"{STATE_BLOCK_ID}.{incident.version}",
        "elements": [
            {"type": "mrkdwn", "text": truncate_mrkdwn(text, MAX_CONTEXT_TEXT)}
            for text in incident_state_texts(incident)
        ],
    }


def incident_parent_update(
    parent_blocks: Sequence[Mapping[str, Any]], incident: Incident, channel: str, ts: str
) -> JsonObject:
    """chat.update body of the parent: its blocks without our previous state and buttons, then
    the state line, then the buttons while the incident is not resolved.

    No ``attachments`` (nor ``metadata``): Slack keeps the message's own, so the colour bar and
    the alert's details stay as posted.
    """
    kept = [
        dict(block)
        for block in parent_blocks
        if not str(block.get("block_id", "")).startswith(BLOCK_ID_PREFIX)
    ]
    ours: list[JsonObject] = [incident_state_block(incident)]
    if incident.state != "resolved":
        ours.append(
            incident_buttons(
                incident.key,
                acknowledged=incident.acknowledged_at is not None,
                silenced=incident.state == "silenced",
                version=incident.version,
            )
        )
    blocks = kept[: MAX_BLOCKS - len(ours)] + ours
    return {"channel": channel, "ts": ts, "text": incident_text(incident), "blocks": blocks}


def incident_text(incident: Incident) -> str:
    """The message's text fallback (notifications, clients without blocks), naming the state."""
    style = RESOLVED_STYLE if incident.state == "resolved" else severity_style(incident.severity)
    title = escape_mrkdwn(" ".join(incident.title.split()) or "Unnamed alert")
    state = incident_state_texts(incident)[0].replace("*", "")
    return truncate_mrkdwn(f"{style.emoji} {title} {DASH} {state}", MAX_TEXT)


# --- parts ---------------------------------------------------------------------------------------


def _plain(text: str) -> JsonObject:
    return {"type": "plain_text", "text": text, "emoji": True}


def _button(action_id: str, text: str, value: str, *, style: str | None = None) -> JsonObject:
    button: JsonObject = {
        "type": "button",
        "action_id": action_id,
        "text": _plain(text),
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _who(actor: str | None) -> str:
    return escape_mrkdwn(actor.strip()) if actor and actor.strip() else "someone"


def _at(moment: datetime | None) -> str:
    return f" at {_clock(moment)}" if moment else ""


def _clock(moment: datetime) -> str:
    """ "2026-12-02 12:03 UTC": minutes are enough for people, the date for a 1-day silence."""
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"
