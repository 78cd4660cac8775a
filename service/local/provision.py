"""Create the cloud resources a stack needs, from the catalog. Every step is idempotent: AlreadyExists is success.

Hook point: a provisioning step is any ``Callable[[Endpoints, Catalog], None]``. ``default_steps()`` is the list the
launcher runs, in order, after the emulators answer and before front-ends and replicators start. Later areas add
their own step (e.g. per-category BigQuery tables) by naming it in ``EXTRA_STEPS`` as ``"module:function"``; it is
imported when the stack starts. ``LocalCloud(config, steps=...)`` replaces the list entirely (tests).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable

from service.catalog import Catalog
from service.local.clients import bigquery_client, pubsub_subscriber, storage_client
from service.local.endpoints import Endpoints

ProvisionStep = Callable[[Endpoints, Catalog], None]

EXTRA_STEPS: tuple[str, ...] = ("replicator.bigquery.tables:provision_step",)
"""``"module:function"`` names of steps that other areas contribute; run after the built-in ones."""


def provision_pubsub(endpoints: Endpoints, catalog: Catalog) -> None:
    """Per tier: topic, dead-letter topic, subscription with the tier's ack deadline, retention and dead-letter
    policy, exactly-once delivery; and a subscription on the dead-letter topic so dead letters are kept."""
    from google.api_core.exceptions import AlreadyExists
    from google.pubsub_v1.types import DeadLetterPolicy

    from service.local.clients import pubsub_publisher

    publisher = pubsub_publisher(endpoints)
    subscriber = pubsub_subscriber(endpoints)
    p = endpoints.project
    try:
        for tier in catalog.tiers:
            topic = publisher.topic_path(p, catalog.topic(tier.name))
            dl_topic = publisher.topic_path(p, catalog.dead_letter_topic(tier.name))
            for name in (topic, dl_topic):
                with contextlib.suppress(AlreadyExists):
                    publisher.create_topic(name=name)
            subs = [
                {
                    "name": subscriber.subscription_path(p, catalog.subscription(tier.name)),
                    "topic": topic,
                    "ack_deadline_seconds": tier.ack_deadline_seconds,
                    "message_retention_duration": {"seconds": tier.message_retention_seconds},
                    "enable_exactly_once_delivery": True,
                    "dead_letter_policy": DeadLetterPolicy(
                        dead_letter_topic=dl_topic, max_delivery_attempts=tier.max_delivery_attempts
                    ),
                },
                {
                    "name": subscriber.subscription_path(p, catalog.dead_letter_subscription(tier.name)),
                    "topic": dl_topic,
                    "ack_deadline_seconds": tier.ack_deadline_seconds,
                    "message_retention_duration": {"seconds": tier.message_retention_seconds},
                },
            ]
            for sub in subs:
                with contextlib.suppress(AlreadyExists):
                    subscriber.create_subscription(request=sub)
    finally:
        subscriber.close()
        publisher.transport.close()


def provision_bucket(endpoints: Endpoints, catalog: Catalog) -> None:
    """The landing bucket."""
    from google.api_core.exceptions import Conflict

    client = storage_client(endpoints)
    with contextlib.suppress(Conflict):
        client.create_bucket(endpoints.bucket)


def provision_dataset(endpoints: Endpoints, catalog: Catalog) -> None:
    """The BigQuery dataset named by the catalog."""
    client = bigquery_client(endpoints)
    try:
        client.create_dataset(f"{endpoints.project}.{catalog.dataset}", exists_ok=True)
    finally:
        client.close()  # type: ignore[no-untyped-call]


def _import_step(ref: str) -> ProvisionStep:
    module, _, attr = ref.partition(":")
    step: ProvisionStep = getattr(importlib.import_module(module), attr)
    return step


def default_steps() -> list[ProvisionStep]:
    """Built-in steps, then ``EXTRA_STEPS``."""
    steps: list[ProvisionStep] = [provision_pubsub, provision_bucket, provision_dataset]
    steps.extend(_import_step(ref) for ref in EXTRA_STEPS)
    return steps


def provision(endpoints: Endpoints, catalog: Catalog, steps: list[ProvisionStep]) -> None:
    """Run ``steps`` in order. Exceptions propagate; re-running after a failure is safe."""
    for step in steps:
        step(endpoints, catalog)
