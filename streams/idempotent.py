"""A Faust app whose producer is idempotent (``enable_idempotence``, ``acks=all``) and whose
table-write buffer holds a whole decided batch.

Faust turns idempotence on only inside its exactly-once transactions, which Parley does not use
(at-least-once with idempotent consumers). An idempotent producer still matters here: a retried
batch (a lost ack, a leader change) is written once and in order, so the log never holds the
same event twice at two offsets because of the producer itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

IDEMPOTENT_PRODUCER: Mapping[str, Any] = {"acks": "all", "enable_idempotence": True}
# Table writes wait in Faust's producer buffer for their changelog send; past its size (100 by
# default) Faust stops handing records to every agent until it drains. A decided batch writes three
# table keys per command, so the default pauses the whole worker after about 33 commands.
TABLE_WRITE_BUFFER = 10_000


class IdempotentProducer(faust_aiokafka.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffer.max_messages = TABLE_WRITE_BUFFER

    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), **IDEMPOTENT_PRODUCER}


class PromptConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer with the app's ``fetch_max_wait_ms`` instead of Faust's fixed 1,500 ms.

    aiokafka keeps one fetch request in flight per broker and sends the next only once every
    record it buffered has been taken; a request for partitions with nothing new is held by the
    broker up to that wait. Commands that arrive meanwhile wait for it: a short wait lets them in
    sooner, for a few idle fetches a second more."""

    def _create_worker_consumer(self, *args: Any, **kwargs: Any) -> Any:
        consumer = super()._create_worker_consumer(*args, **kwargs)
        consumer._fetch_max_wait_ms = int(getattr(self.app, "fetch_max_wait_ms", consumer._fetch_max_wait_ms))
        return consumer


class PromptConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return PromptConsumerThread(self, loop=self.loop, beacon=self.beacon)


class IdempotentTransport(faust_aiokafka.Transport):
    Producer = IdempotentProducer
    Consumer = PromptConsumer


class ParleyApp(faust.App):
    fetch_max_wait_ms: int = 1500  # create_app sets Settings.kafka_fetch_max_wait_ms

    def _new_transport(self) -> Any:
        return IdempotentTransport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return IdempotentTransport(self.conf.broker_producer, self)
