"""The local Kafka broker's config: KRaft cluster ids and the server properties of one start."""

from __future__ import annotations

import base64
from pathlib import Path

from infra.localstack.datadir import DataDir
from infra.localstack.servers import KAFKA_CONTROLLER_PORT, KafkaServer, LaunchContext, kafka_cluster_id
from infra.settings import Settings


def test_cluster_ids_are_22_character_base64_uuids_never_starting_with_a_dash() -> None:
    for _ in range(2000):
        cluster_id = kafka_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_properties_follow_the_ports_of_this_start(tmp_path: Path) -> None:
    data_dir = DataDir.at(tmp_path)
    ctx = LaunchContext(data_dir, 19092, Settings(), {KAFKA_CONTROLLER_PORT: 19093})
    props = KafkaServer().server_properties(ctx)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["log.dirs"] == str(data_dir.kafka_log_path)
    assert props["auto.create.topics.enable"] == "false"
    assert props["log.retention.ms"] == "-1"
