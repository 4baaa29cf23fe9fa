"""The incident store's moving parts in a running threader, built from its settings: the
database, the recorder and its upkeep, Alertmanager's silences, the actions, Slack's buttons and
interactions. ``service.serve`` starts them beside the HTTP server and the delivery worker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from .app import IncidentSurfaces
from .config import ThreaderConfig
from .incident_slack import IncidentParents, SlackIncidentView
from .incidents.actions import IncidentActions
from .incidents.recorder import IncidentRecorder, IncidentUpkeep
from .incidents.records import IncidentStoreUnavailable
from .incidents.store import IncidentStore
from .interactions import make_interactions_handler
from .metrics import ThreaderMetrics
from .silences import AlertmanagerSilences, SilenceFailed
from .slack import SlackClient


class IncidentStoreStartupError(Exception):
    """The incident database named by the settings cannot be opened."""


@dataclass
class IncidentRuntime:
    store: IncidentStore
    recorder: IncidentRecorder
    upkeep: IncidentUpkeep
    surfaces: IncidentSurfaces
    parents: IncidentParents
    silences: AlertmanagerSilences | None

    def describe(self) -> str:
        """One line for the log at start."""
        return "Incidents in the {} database{}{}.".format(
            self.store.kind,
            "; Slack buttons on" if self.surfaces.interactions is not None else "",
            "; silences in Alertmanager" if self.silences is not None else "",
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Record and keep up until ``stop``; then write what is queued (a few seconds)."""
        await asyncio.gather(self.recorder.run(stop), self.upkeep.run(stop))

    async def aclose(self) -> None:
        if self.surfaces.interactions is not None:
            await self.surfaces.interactions.aclose()
        if self.silences is not None:
            await self.silences.aclose()
        await self.store.close()


async def open_incidents(
    config: ThreaderConfig, slack: SlackClient, metrics: ThreaderMetrics
) -> IncidentRuntime | None:
    """The incident store and everything around it; None when the settings name no database.
    Raises ``IncidentStoreStartupError`` when the database cannot be opened (or migrated)."""
    url = config.incident_database_url
    if url is None:
        return None
    retention = timedelta(seconds=config.raw_alert_retention)
    try:
        store = await asyncio.to_thread(IncidentStore.open, url, raw_retention=retention)
    except IncidentStoreUnavailable as error:
        raise IncidentStoreStartupError(str(error)) from None
    view = SlackIncidentView(store, slack, metrics)
    recorder = IncidentRecorder(store, metrics)
    upkeep = IncidentUpkeep(store, metrics, retention=retention, on_changed=view.show_all)
    silences = AlertmanagerSilences(config.alertmanager_url) if config.alertmanager_url else None
    actions = IncidentActions(store, silences, on_change=view.show, metrics=metrics)
    interactions = (
        make_interactions_handler(
            config.slack_signing_secret.encode(),
            actions.via("slack"),
            explained_errors=(SilenceFailed,),
            metrics=metrics,
        )
        if config.slack_signing_secret
        else None
    )
    return IncidentRuntime(
        store=store,
        recorder=recorder,
        upkeep=upkeep,
        surfaces=IncidentSurfaces(store, recorder, actions, interactions),
        parents=IncidentParents(
            recorder, config.incident_group_by, buttons=interactions is not None
        ),
        silences=silences,
    )
