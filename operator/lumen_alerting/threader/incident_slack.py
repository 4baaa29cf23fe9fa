"""Incidents in Slack: the buttons on a new parent message, and the parent's update when a person
changes the incident's state, or its silence runs out (a resolution by the alerts shows through
the delivery worker's resolved update).

The update is rebuilt from the incident's first stored alert, not from the message Slack sent
with a click, so an acknowledge from the API or the page shows in Slack the same way. Slack keeps
the parent's attachments (the colour bar and details) when ``chat.update`` leaves them out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from .incident_messages import incident_buttons, incident_parent_update
from .incidents.grouping import incident_key
from .incidents.recorder import IncidentRecorder
from .incidents.records import Incident, IncidentNotFound, RawAlert
from .incidents.store import IncidentStore
from .messages import parent_message, resolved_parent_update
from .metrics import ThreaderMetrics
from .slack import MessageRef, SlackClient, SlackError
from .webhook import GRAFANA_LINKS, Alert

log = logging.getLogger("lumen.threader.incidents")


class IncidentParents:
    """The delivery worker's ``ParentHooks``: a firing parent gets the incident's buttons (with
    Slack interactivity on), and every posted parent is noted on its incident."""

    def __init__(
        self, recorder: IncidentRecorder, group_by: Sequence[str], *, buttons: bool
    ) -> None:
        self._recorder = recorder
        self._group_by = tuple(group_by)
        self._buttons = buttons

    def key(self, alert: Alert) -> str:
        return incident_key(alert.fingerprint, alert.starts_at, alert.labels, self._group_by)

    def decorate(self, message: dict[str, Any], alert: Alert) -> None:
        if self._buttons and alert.status == "firing":
            message["blocks"] = [*message.get("blocks", []), incident_buttons(self.key(alert))]

    def posted(self, alert: Alert, parent: MessageRef) -> None:
        self._recorder.parent_posted(self.key(alert), parent.channel_id, parent.ts)


class SlackIncidentView:
    """Shows incidents' states on their parent messages (``chat.update``)."""

    def __init__(self, store: IncidentStore, slack: SlackClient, metrics: ThreaderMetrics) -> None:
        self._store = store
        self._slack = slack
        self._metrics = metrics

    async def show(self, incident: Incident) -> None:
        """Update the incident's parent message; nothing when it has none (yet)."""
        channel, ts = incident.slack_channel, incident.slack_ts
        if not channel or not ts:
            return
        try:
            detail = await self._store.get(incident.id)
        except IncidentNotFound:
            return
        if not detail.alerts:
            return
        alert = _alert(detail.alerts[0])
        if incident.state == "resolved":
            header = resolved_parent_update(alert, channel, ts)
        else:
            header = parent_message(alert, channel, thread_key="", delivery_id="")
        body = incident_parent_update(header.get("blocks", []), incident, channel, ts)
        try:
            await self._slack.update_message(body)
        except SlackError as error:
            self._metrics.slack_calls.labels("chat.update", error.error).inc()
            log.warning(
                "Incident %s changed, but its Slack message could not: %s",
                incident.id,
                error.describe(),
            )
            return
        self._metrics.slack_calls.labels("chat.update", "ok").inc()

    async def show_all(self, incidents: Sequence[Incident]) -> None:
        for incident in incidents:
            await self.show(incident)


def _alert(raw: RawAlert) -> Alert:
    return Alert(
        status=raw.status,
        labels=raw.labels,
        annotations=raw.annotations,
        starts_at=raw.starts_at,
        ends_at=raw.ends_at,
        generator_url=raw.links.get("generatorURL", ""),
        fingerprint=raw.fingerprint,
        links={name: url for name, url in raw.links.items() if name in GRAFANA_LINKS},
    )
