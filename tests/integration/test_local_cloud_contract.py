"""Contract tests: the emulator behaviour logpipe relies on, pinned against the session's local cloud.

If an emulator upgrade changes any of these, the pipeline's guarantees can no longer be checked locally; fix the
emulator choice (docs/local-cloud.md) before touching pipeline code.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
from google.api_core.exceptions import Conflict, PreconditionFailed
from google.cloud import bigquery
from google.cloud.pubsub_v1 import SubscriberClient
from google.pubsub_v1.types import DeadLetterPolicy, ReceivedMessage

from service.catalog import load_catalog
from service.local.clients import bigquery_client, pubsub_publisher, pubsub_subscriber, storage_client
from service.local.endpoints import Endpoints
from service.local.provision import default_steps, provision

pytestmark = pytest.mark.integration


def _uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def subscriber(local_cloud: Endpoints) -> Iterator[SubscriberClient]:
    client = pubsub_subscriber(local_cloud)
    yield client
    client.close()


def _pull(sub: SubscriberClient, path: str, want: int = 1, timeout_s: float = 20.0) -> list[ReceivedMessage]:
    deadline = time.monotonic() + timeout_s
    got: list[ReceivedMessage] = []
    while len(got) < want and time.monotonic() < deadline:
        resp = sub.pull(subscription=path, max_messages=want - len(got), timeout=5.0)
        got.extend(resp.received_messages)
    return got


def _topic_and_sub(local_cloud: Endpoints, subscriber: SubscriberClient, **sub_fields: object) -> tuple[str, str]:
    publisher = pubsub_publisher(local_cloud)
    topic = publisher.create_topic(name=publisher.topic_path(local_cloud.project, f"t-{_uid()}")).name
    path = subscriber.subscription_path(local_cloud.project, f"s-{_uid()}")
    subscriber.create_subscription(request={"name": path, "topic": topic, "ack_deadline_seconds": 10, **sub_fields})
    return topic, path


def test_provisioned_resources_match_the_catalog(local_cloud: Endpoints, subscriber: SubscriberClient) -> None:
    catalog = load_catalog(local_cloud.catalog)
    for tier in catalog.tiers:
        sub = subscriber.get_subscription(
            subscription=subscriber.subscription_path(local_cloud.project, catalog.subscription(tier.name))
        )
        assert sub.topic.endswith("/topics/" + catalog.topic(tier.name))
        assert sub.ack_deadline_seconds == tier.ack_deadline_seconds
        assert sub.enable_exactly_once_delivery
        assert sub.dead_letter_policy.max_delivery_attempts == tier.max_delivery_attempts
        assert sub.dead_letter_policy.dead_letter_topic.endswith("/topics/" + catalog.dead_letter_topic(tier.name))
        dl = subscriber.get_subscription(
            subscription=subscriber.subscription_path(local_cloud.project, catalog.dead_letter_subscription(tier.name))
        )
        assert dl.topic == sub.dead_letter_policy.dead_letter_topic
    assert storage_client(local_cloud).bucket(local_cloud.bucket).exists()
    bq = bigquery_client(local_cloud)
    assert bq.get_dataset(f"{local_cloud.project}.{catalog.dataset}").dataset_id == catalog.dataset
    # The provisioning hook (provision.EXTRA_STEPS) made what users query: one table or view per category.
    for c in catalog.categories:
        assert bq.get_table(f"{local_cloud.project}.{catalog.dataset}.{c.name}").table_id == c.name


def test_provisioning_twice_is_harmless(local_cloud: Endpoints) -> None:
    provision(local_cloud, load_catalog(local_cloud.catalog), default_steps())


def test_pubsub_publish_pull_ack(local_cloud: Endpoints, subscriber: SubscriberClient) -> None:
    topic, sub = _topic_and_sub(local_cloud, subscriber)
    publisher = pubsub_publisher(local_cloud)
    ids = {publisher.publish(topic, f"m{i}".encode(), category="app_log").result(timeout=10) for i in range(3)}
    got = _pull(subscriber, sub, want=3)
    assert {m.message.message_id for m in got} == ids
    assert all(m.message.attributes["category"] == "app_log" for m in got)
    subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id for m in got])
    assert subscriber.pull(subscription=sub, max_messages=10, timeout=10.0).received_messages == []


def test_pubsub_nack_redelivers(local_cloud: Endpoints, subscriber: SubscriberClient) -> None:
    topic, sub = _topic_and_sub(local_cloud, subscriber)
    msg_id = pubsub_publisher(local_cloud).publish(topic, b"again").result(timeout=10)
    first = _pull(subscriber, sub)
    assert [m.message.message_id for m in first] == [msg_id]
    subscriber.modify_ack_deadline(subscription=sub, ack_ids=[first[0].ack_id], ack_deadline_seconds=0)
    second = _pull(subscriber, sub)
    assert [m.message.message_id for m in second] == [msg_id]
    subscriber.acknowledge(subscription=sub, ack_ids=[second[0].ack_id])


def test_pubsub_dead_letters_after_max_attempts(local_cloud: Endpoints, subscriber: SubscriberClient) -> None:
    publisher = pubsub_publisher(local_cloud)
    dl_topic = publisher.create_topic(name=publisher.topic_path(local_cloud.project, f"dl-{_uid()}")).name
    dl_sub = subscriber.subscription_path(local_cloud.project, f"dls-{_uid()}")
    subscriber.create_subscription(request={"name": dl_sub, "topic": dl_topic})
    policy = DeadLetterPolicy(dead_letter_topic=dl_topic, max_delivery_attempts=5)
    topic, sub = _topic_and_sub(local_cloud, subscriber, dead_letter_policy=policy, enable_exactly_once_delivery=True)
    publisher.publish(topic, b"poison", reason="test").result(timeout=10)
    attempts = []
    for _ in range(5):
        got = _pull(subscriber, sub)
        assert len(got) == 1
        attempts.append(got[0].delivery_attempt)
        subscriber.modify_ack_deadline(subscription=sub, ack_ids=[got[0].ack_id], ack_deadline_seconds=0)
    assert attempts == [1, 2, 3, 4, 5]
    # The emulator forwards the message when its 6th delivery would be due: the next pull gets nothing.
    assert subscriber.pull(subscription=sub, max_messages=1, timeout=10.0).received_messages == []
    dead = _pull(subscriber, dl_sub)
    assert [m.message.data for m in dead] == [b"poison"]
    assert dead[0].message.attributes["reason"] == "test"


def test_gcs_single_request_create_is_a_precondition(local_cloud: Endpoints) -> None:
    bucket = storage_client(local_cloud).bucket(local_cloud.bucket)
    blob = bucket.blob(f"contract/{_uid()}.bin")
    blob.upload_from_string(b"original", if_generation_match=0)
    with pytest.raises(PreconditionFailed):
        bucket.blob(blob.name).upload_from_string(b"second writer", if_generation_match=0)
    assert bucket.blob(blob.name).download_as_bytes() == b"original"


def test_bigquery_load_from_gcs_and_repeated_job_id_conflicts(local_cloud: Endpoints) -> None:
    uid = _uid()
    rows = [{"event_id": f"e{i}", "n": i} for i in range(3)]
    blob = storage_client(local_cloud).bucket(local_cloud.bucket).blob(f"contract/{uid}.jsonl")
    blob.upload_from_string("\n".join(json.dumps(r) for r in rows) + "\n", if_generation_match=0)
    bq = bigquery_client(local_cloud)
    table = f"{local_cloud.project}.{local_cloud.dataset}.contract_{uid}"
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        schema=[bigquery.SchemaField("event_id", "STRING"), bigquery.SchemaField("n", "INT64")],
    )
    uri = f"gs://{local_cloud.bucket}/{blob.name}"
    job_id = f"load-{uid}"
    bq.load_table_from_uri(uri, table, job_id=job_id, job_config=config).result(timeout=60)
    with pytest.raises(Conflict):
        bq.load_table_from_uri(uri, table, job_id=job_id, job_config=config).result(timeout=60)
    got = sorted((r["event_id"], r["n"]) for r in bq.query(f"SELECT event_id, n FROM `{table}`").result())
    assert got == [("e0", 0), ("e1", 1), ("e2", 2)]
