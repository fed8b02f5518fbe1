"""A Faust app whose consumers poll the broker with a configurable fetch wait.

Faust hard-codes ``fetch_max_wait_ms=1500``. Kafka answers a long poll as soon as data
arrives, but some Kafka-API brokers (the local one among them) hold an empty fetch for its
full wait, which would add that wait to every command's latency. The wait comes from
settings (``PARLEY_KAFKA_FETCH_WAIT_MS``): short locally, longer against real Kafka.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


def tuned_app(fetch_wait_ms: int, *args: Any, **kwargs: Any) -> faust.App:
    class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_wait_ms
            return consumer

    class TunedConsumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class TunedTransport(faust_aiokafka.Transport):
        Consumer = TunedConsumer

    class TunedApp(faust.App):
        def _new_transport(self) -> Any:
            return TunedTransport(self.conf.broker_consumer, self)

    return TunedApp(*args, **kwargs)
