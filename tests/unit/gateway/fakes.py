"""In-memory adapters of the gateway's ports, for unit tests only."""

from __future__ import annotations

from commands.handler import Stores, apply_result, handle
from domain.envelope import CommandEnvelope, Outcome
from tests.unit.app.scenario import DictKV


class InMemoryCommandSender:
    """A CommandSender that decides at once with the real command handler over dicts: the single
    writer and its tables, without the log in between."""

    instance_id = "gateway-in-memory"

    def __init__(self) -> None:
        self.stores = Stores(aggregates=DictKV(), messages=DictKV(), outcomes=DictKV())

    async def execute(self, envelope: CommandEnvelope, timeout: float) -> Outcome:  # noqa: ASYNC109
        result = handle(envelope, self.stores)
        apply_result(envelope, result, self.stores)
        return result.outcome.model_copy(update={"reply_to": envelope.reply_to})
