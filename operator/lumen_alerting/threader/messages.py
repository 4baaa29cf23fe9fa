"""The Slack messages of one alert's thread, laid out as in seed 002 and within Block Kit limits.

Pure functions from an ``Alert`` (and the ids and times the caller passes in) to the JSON body of
``chat.postMessage`` or ``chat.update``. No I/O, no clock.

Layout (seed 002): a header block with the severity emoji and the summary; beside the severity
colour bar (one attachment), the fields Severity, Environment, Service, Cluster and Instance, the
description, the runbook link, the start (and resolve) time, and the remaining labels as context.
An alert from Grafana adds a line of links (Dashboard · Panel · Silence · Image) after the
runbook, and its values (``B=44.2``) beside the times.

Limits: Slack refuses a whole message (``invalid_blocks``) when one block breaks a Block Kit
limit, and the alert would never reach the channel. So every text is cut to fit and ends in "…",
cut where nothing is broken: never inside a grapheme cluster (an emoji ZWJ sequence, a flag, a
letter and its combining marks, a surrogate pair), an escape (``&amp;``) or a link
(``<url|text>``). Lengths are counted in UTF-16 code units, never fewer than the characters,
so a text that fits here fits Slack however it counts.

Escaping: user text (labels, annotations) in mrkdwn has ``&``, ``<`` and ``>`` escaped, so it
can neither mention (``<!channel>``) nor link. plain_text (the header) is not parsed by Slack and
is sent as is: escaping it would show ``&amp;``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from .webhook import Alert

JsonObject = dict[str, Any]

# https://docs.slack.dev/reference/block-kit/blocks and chat.postMessage
MAX_BLOCKS: Final = 50
MAX_HEADER_TEXT: Final = 150
MAX_SECTION_TEXT: Final = 3000
MAX_SECTION_FIELDS: Final = 10
MAX_FIELD_TEXT: Final = 2000
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_CONTEXT_TEXT: Final = 3000  # a context element is a text object, 3000 like every other
MAX_TEXT: Final = 4000  # the top-level text: notifications and clients without blocks show it

ELLIPSIS: Final = "\N{HORIZONTAL ELLIPSIS}"
DASH: Final = "\N{EM DASH}"
METADATA_EVENT_TYPE: Final = "lumen_alert"
LABEL_SEPARATOR: Final = " | "
LINK_SEPARATOR: Final = " \N{MIDDLE DOT} "
# Grafana's links (webhook.GRAFANA_LINKS) in the order shown, with their link texts.
GRAFANA_LINK_TEXTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "dashboardURL": "Dashboard",
        "panelURL": "Panel",
        "silenceURL": "Silence",
        "imageURL": "Image",
    }
)


class SeverityStyle(NamedTuple):
    emoji: str
    color: str


# Seed 002's emoji and colours. Its critical emoji did not survive the seed's mis-encoding
# (only its first byte did), so critical gets the police light.
_CRITICAL = SeverityStyle("\N{POLICE CARS REVOLVING LIGHT}", "#E01E5A")
_WARNING = SeverityStyle("\N{WARNING SIGN}\N{VARIATION SELECTOR-16}", "#ECB22E")
_SUCCESS = SeverityStyle("\N{WHITE HEAVY CHECK MARK}", "#2EB67D")
SEVERITY_STYLE: Final[Mapping[str, SeverityStyle]] = MappingProxyType(
    {
        "critical": _CRITICAL,
        "error": SeverityStyle("\N{CROSS MARK}", "#E01E5A"),
        "warning": _WARNING,
        "info": SeverityStyle("\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16}", "#2EB67D"),
        "debug": SeverityStyle("\N{BUG}", "#36C5F0"),
        "success": _SUCCESS,
        "resolved": _SUCCESS,
        # The default severities of an SLO's page and ticket alerts (spec.slos[].alerting).
        "page": _CRITICAL,
        "ticket": _WARNING,
    }
)
UNKNOWN_STYLE: Final = SeverityStyle("\N{MEDIUM WHITE CIRCLE}", "#9E9E9E")
RESOLVED_STYLE: Final = SEVERITY_STYLE["resolved"]
REPEAT_EMOJI: Final = "\N{CLOCKWISE RIGHTWARDS AND LEFTWARDS OPEN CIRCLE ARROWS}"

# Labels shown as fields, so not repeated in the label context (the environment label is added
# per alert: env, or environment when env is absent).
_FIELD_LABELS: Final = frozenset({"severity", "service", "cluster", "instance"})
_ENVIRONMENT_LABELS: Final = ("env", "environment")
_WEB_URL = re.compile(r"https?://\S+", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:amp|lt|gt);")
_ZWJ = "\N{ZERO WIDTH JOINER}"
# No real grapheme cluster is longer; a longer run of combining marks ("zalgo") may be cut.
_MAX_CLUSTER = 32


def severity_style(severity: str | None) -> SeverityStyle:
    """Emoji and colour of a severity label, case-insensitive; ⚪ grey for unknown ones."""
    if severity is None:
        return UNKNOWN_STYLE
    return SEVERITY_STYLE.get(severity.strip().lower(), UNKNOWN_STYLE)


# --- the four messages ---------------------------------------------------------------------------


def parent_message(
    alert: Alert,
    channel: str,
    *,
    thread_key: str,
    delivery_id: str,
    now_resolved: bool = False,
) -> JsonObject:
    """chat.postMessage body of the thread's first message.

    ``now_resolved``: the first the threader hears of the alert is its resolution, so the one
    message it posts is already in resolved styling. The metadata lets the threader find its
    message again after a crash (by ``delivery_id``) and rebuild the thread map from Slack.
    """
    return {
        "channel": channel,
        **_alert_message(alert, resolved=now_resolved),
        "metadata": {
            "event_type": METADATA_EVENT_TYPE,
            "event_payload": {"thread_key": thread_key, "delivery_id": delivery_id},
        },
        # A runbook or generator link preview would push the alert itself out of view.
        "unfurl_links": False,
        "unfurl_media": False,
    }


def repeat_reply(
    alert: Alert, channel: str, thread_ts: str, *, now: datetime | None = None
) -> JsonObject:
    """chat.postMessage body of the short "still firing" reply; with ``now``, for how long."""
    summary = escape_mrkdwn(_summary(alert))
    since = f"Started: {_clock(alert.starts_at)}"
    if now is not None and _utc(now) >= alert.starts_at:
        since += f" | firing for {_duration(_utc(now) - alert.starts_at)}"
    return {
        "channel": channel,
        "thread_ts": thread_ts,
        "text": truncate_mrkdwn(f"{REPEAT_EMOJI} Still firing {DASH} {summary}", MAX_TEXT),
        "blocks": [
            _section(f"{REPEAT_EMOJI} *Still firing* {DASH} {summary}"),
            _context([since]),
        ],
        "unfurl_links": False,
        "unfurl_media": False,
    }


def resolved_reply(alert: Alert, channel: str, thread_ts: str) -> JsonObject:
    """chat.postMessage body of the seed's "✅ RESOLVED — <summary>" message, in the thread."""
    return {
        "channel": channel,
        "thread_ts": thread_ts,
        **_alert_message(alert, resolved=True),
        "unfurl_links": False,
        "unfurl_media": False,
    }


def resolved_parent_update(alert: Alert, channel: str, ts: str) -> JsonObject:
    """chat.update body that turns the parent into its resolved form: ✅, "RESOLVED", green bar,
    start and resolve times. Without ``metadata``, Slack keeps the parent's."""
    return {"channel": channel, "ts": ts, **_alert_message(alert, resolved=True)}


# --- text helpers ---------------------------------------------------------------------------------


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities; nothing else is (or may be) escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_length(text: str) -> int:
    """Length in UTF-16 code units (an astral character such as 🔥 counts 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def truncate_plain(text: str, limit: int) -> str:
    """``text`` if it fits ``limit``, else its longest prefix of whole grapheme clusters that
    fits with "…" appended."""
    return _truncate(text, limit, lambda text, start, _horizon: _cluster_end(text, start))


def truncate_mrkdwn(text: str, limit: int) -> str:
    """Like ``truncate_plain``, also keeping every ``&…;`` escape and ``<…>`` link whole."""
    return _truncate(text, limit, _mrkdwn_token_end)


# --- layout --------------------------------------------------------------------------------------


def _alert_message(alert: Alert, *, resolved: bool) -> JsonObject:
    """text, blocks and attachments of the full (seed 002) message."""
    severity = alert.labels.get("severity", "").strip()
    style = RESOLVED_STYLE if resolved else severity_style(severity)
    summary = _summary(alert)
    if resolved:
        title = f"{style.emoji} RESOLVED {DASH} {summary}"
        text = f"{style.emoji} RESOLVED {DASH} {escape_mrkdwn(summary)}"
    else:
        title = f"{style.emoji} {summary}"
        tag = f"[{escape_mrkdwn(severity.upper())}] " if severity else ""
        text = f"{style.emoji} {tag}{escape_mrkdwn(summary)}"
    header = {
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate_plain(" ".join(title.split()), MAX_HEADER_TEXT),
            "emoji": True,
        },
    }
    return {
        "text": truncate_mrkdwn(text, MAX_TEXT),
        "blocks": [header],
        # Block Kit alone has no colour; an attachment's blocks get the seed's colour bar.
        "attachments": [{"color": style.color, "blocks": _details(alert, resolved)[:MAX_BLOCKS]}],
    }


def _details(alert: Alert, resolved: bool) -> list[JsonObject]:
    labels = alert.labels
    environment = next((name for name in _ENVIRONMENT_LABELS if labels.get(name)), None)
    blocks: list[JsonObject] = [
        {
            "type": "section",
            "fields": [
                _field("Severity", labels.get("severity", "").upper()),
                _field("Environment", labels[environment] if environment else ""),
                _field("Service", labels.get("service", "")),
                _field("Cluster", labels.get("cluster", "")),
                _field("Instance", labels.get("instance", "")),
            ],
        }
    ]
    description = alert.annotations.get("description", "").strip()
    if description:
        blocks.append(_section(f"*Description:*\n{escape_mrkdwn(description)}"))
    runbook = alert.annotations.get("runbook_url", "").strip()
    if runbook:
        blocks.append(_runbook(runbook))
    links = _grafana_links(alert.links)
    if links is not None:
        blocks.append(links)
    times = f"Started: {_clock(alert.starts_at)}"
    if resolved:
        times += f" | Resolved: {_clock(alert.ends_at) if alert.ends_at else '-'}"
    if alert.values:
        shown_values = ", ".join(
            f"{escape_mrkdwn(name)}={number:.6g}" for name, number in sorted(alert.values.items())
        )
        times += f" | Values: {shown_values}"
    blocks.append(_context([times]))
    shown = _FIELD_LABELS | ({environment} if environment else set())
    pairs = [
        f"{escape_mrkdwn(name)}={escape_mrkdwn(value)}"
        for name, value in sorted(labels.items())
        if name not in shown
    ]
    if pairs:
        blocks.append(_context(_pack(pairs, MAX_CONTEXT_TEXT, MAX_CONTEXT_ELEMENTS)))
    return blocks


def _summary(alert: Alert) -> str:
    for candidate in (alert.annotations.get("summary", ""), alert.labels.get("alertname", "")):
        if candidate.strip():
            return candidate.strip()
    return "Unnamed alert"


def _field(name: str, value: str) -> JsonObject:
    shown = escape_mrkdwn(value.strip()) or "-"
    return {"type": "mrkdwn", "text": truncate_mrkdwn(f"*{name}:* {shown}", MAX_FIELD_TEXT)}


def _section(text: str) -> JsonObject:
    return {
        "type": "section",
        "text": {"type": "mrkdwn", "text": truncate_mrkdwn(text, MAX_SECTION_TEXT)},
    }


def _context(texts: list[str]) -> JsonObject:
    return {
        "type": "context",
        "elements": [
            {"type": "mrkdwn", "text": truncate_mrkdwn(text, MAX_CONTEXT_TEXT)}
            for text in texts[:MAX_CONTEXT_ELEMENTS]
        ],
    }


def _runbook(url: str) -> JsonObject:
    """The seed's "View Runbook" link (``_link``; links are the only unescaped ``<…>`` in a
    message). An address too long to link whole is shown as text instead."""
    link = _link(url, "View Runbook")
    if link is not None and slack_length(f"*Runbook:* {link}") <= MAX_SECTION_TEXT:
        return _section(f"*Runbook:* {link}")
    return _section(f"*Runbook:* {escape_mrkdwn(url)}")


def _grafana_links(links: Mapping[str, str]) -> JsonObject | None:
    """Grafana's "*Grafana:* Dashboard · Panel · Silence · Image" line, or None without links.

    The image is a link, not an image block: Slack refuses the whole message when it cannot
    fetch an image, and Grafana's image store is often reachable only inside the cluster. A link
    that is not http(s), or would not fit the section with those before it, is left out: a
    half-cut address would lead nowhere.
    """
    text = "*Grafana:*"
    shown = 0
    for name, label in GRAFANA_LINK_TEXTS.items():
        link = _link(links.get(name, "").strip(), label)
        if link is None:
            continue
        candidate = f"{text}{LINK_SEPARATOR if shown else ' '}{link}"
        if slack_length(candidate) <= MAX_SECTION_TEXT:
            text, shown = candidate, shown + 1
    return _section(text) if shown else None


def _link(url: str, text: str) -> str | None:
    """``<url|text>``, or None for an address that must not be linked.

    Only http(s) addresses are linked: a link target of ``!channel`` would mention everyone.
    Inside the link, ``&`` is an entity and ``<``, ``>``, ``|`` are percent-encoded, as they
    would end the link early.
    """
    if not (_WEB_URL.fullmatch(url) and url.isprintable()):
        return None
    target = url.replace("&", "&amp;").replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")
    return f"<{target}|{text}>"


def _pack(items: list[str], limit: int, max_parts: int) -> list[str]:
    """``items`` joined by " | " into at most ``max_parts`` texts of at most ``limit``; what does
    not fit is counted at the end ("… +12 more"). An item alone longer than ``limit`` is cut."""
    parts: list[list[str]] = [[]]
    sizes = [0]
    separator = slack_length(LABEL_SEPARATOR)
    for index, raw in enumerate(items):
        item = truncate_mrkdwn(raw, limit)
        added = slack_length(item) + (separator if parts[-1] else 0)
        if sizes[-1] + added > limit:
            if len(parts) == max_parts:
                return _close_pack(parts, sizes, len(items) - index, limit)
            parts.append([])
            sizes.append(0)
            added = slack_length(item)
        parts[-1].append(item)
        sizes[-1] += added
    return [LABEL_SEPARATOR.join(part) for part in parts]


def _close_pack(parts: list[list[str]], sizes: list[int], left: int, limit: int) -> list[str]:
    last = parts[-1]
    separator = slack_length(LABEL_SEPARATOR)

    def note() -> str:
        return f"{ELLIPSIS} +{left} more"

    while last and sizes[-1] + separator + slack_length(note()) > limit:
        dropped = last.pop()
        left += 1
        sizes[-1] -= slack_length(dropped) + (separator if last else 0)
    last.append(note())
    return [LABEL_SEPARATOR.join(part) for part in parts]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clock(moment: datetime) -> str:
    """The seed's "2024-01-15 14:30:25 UTC"."""
    moment = _utc(moment)
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} UTC"
    )


def _duration(elapsed: timedelta) -> str:
    """The two largest units from the first non-zero one: "2d 3h", "1h", "4m 10s", "0s"."""
    rest = int(elapsed.total_seconds())
    amounts = []
    for unit, seconds in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, seconds)
        amounts.append((amount, unit))
    first = next((i for i, (amount, _unit) in enumerate(amounts) if amount), len(amounts) - 1)
    shown = [f"{amount}{unit}" for amount, unit in amounts[first : first + 2] if amount]
    return " ".join(shown) or "0s"


# --- safe truncation -----------------------------------------------------------------------------


def _truncate(text: str, limit: int, token_end: Callable[[str, int, int], int]) -> str:
    if slack_length(text) <= limit:
        return text
    budget = limit - slack_length(ELLIPSIS)
    # A prefix within the budget has fewer characters than ``limit``: never look further.
    horizon = min(len(text), limit)
    used = cut = 0
    while cut < horizon:
        end = token_end(text, cut, horizon)
        size = slack_length(text[cut:end])
        if used + size > budget:
            break
        used += size
        cut = end
    return text[:cut] + ELLIPSIS


def _mrkdwn_token_end(text: str, start: int, horizon: int) -> int:
    char = text[start]
    if char == "<":
        close = text.find(">", start, horizon)
        # A link that does not close within reach cannot fit: it ends the text, unbroken.
        return close + 1 if close != -1 else len(text)
    if char == "&":
        entity = _ENTITY.match(text, start)
        if entity is not None:
            return entity.end()
    return _cluster_end(text, start)


def _cluster_end(text: str, start: int) -> int:
    """End of the grapheme cluster at ``start``: a simplified form of Unicode's extended grapheme
    cluster rules (UAX #29) that keeps emoji sequences, flags and combining marks whole."""
    end = start + 1
    first = text[start]
    if first == "\r" and text.startswith("\n", end):
        return end + 1
    if _is_regional_indicator(first) and end < len(text) and _is_regional_indicator(text[end]):
        end += 1  # a flag is a pair of regional indicators
    stop = min(len(text), start + _MAX_CLUSTER)
    while end < stop and (_extends(text[end]) or text[end - 1] == _ZWJ):
        end += 1
    return end


def _is_regional_indicator(char: str) -> bool:
    return 0x1F1E6 <= ord(char) <= 0x1F1FF


def _extends(char: str) -> bool:
    """Whether ``char`` belongs to the cluster before it."""
    code = ord(char)
    return (
        code == 0x200D  # ZWJ
        or 0x1F3FB <= code <= 0x1F3FF  # skin tone modifiers
        or 0xE0020 <= code <= 0xE007F  # tag characters (subdivision flags)
        or 0x1160 <= code <= 0x11FF  # Hangul medial vowels and final consonants (jamo)
        or 0xDC00 <= code <= 0xDFFF  # a low surrogate after its high one
        # Combining marks, variation selectors (emoji presentation, U+FE0F), the keycap.
        or unicodedata.category(char) in ("Mn", "Me", "Mc")
    )
