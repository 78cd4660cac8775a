"""Create the cloud resources a stack needs, from the catalog. Every step is idempotent: AlreadyExists is success.

Hook point: a provisioning step is any ``Callable[[Endpoints, Catalog], None]``. ``default_steps()`` is the list the
launcher runs, in order, after the emulators answer and before front-ends and replicators start. Other areas add
their own step by naming it in ``EXTRA_STEPS`` as ``"module:function"``; it is imported when the stack starts and
runs after the dataset exists (per-category BigQuery tables are one). ``LocalCloud(config, steps=...)`` replaces the
list entirely (tests).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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


def in_order(*steps: ProvisionStep) -> ProvisionStep:
    """One step that runs ``steps`` one after the other."""

    def run(endpoints: Endpoints, catalog: Catalog) -> None:
        for step in steps:
            step(endpoints, catalog)

    return run


def in_parallel(*steps: ProvisionStep) -> ProvisionStep:
    """One step that runs ``steps`` in threads and waits for all; the first error (in argument order) is raised."""

    def run(endpoints: Endpoints, catalog: Catalog) -> None:
        with ThreadPoolExecutor(max_workers=len(steps) or 1, thread_name_prefix="provision") as pool:
            futures = [pool.submit(step, endpoints, catalog) for step in steps]
        for future in futures:
            future.result()

    return run


def default_steps() -> list[ProvisionStep]:
    """Pub/Sub, the bucket, and the dataset followed by ``EXTRA_STEPS``: three independent chains, run in parallel
    because each talks to a different emulator (the BigQuery tables dominate the time)."""
    extras = [_import_step(ref) for ref in EXTRA_STEPS]
    return [in_parallel(provision_pubsub, provision_bucket, in_order(provision_dataset, *extras))]


def provision(endpoints: Endpoints, catalog: Catalog, steps: list[ProvisionStep]) -> None:
    """Run ``steps`` in order. Exceptions propagate; re-running after a failure is safe."""
    for step in steps:
        step(endpoints, catalog)
