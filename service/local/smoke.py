"""``logpipe smoke``: a smoke check of the local cloud (also ``logpipe demo`` where the end-to-end demo is missing).

``demo`` starts a stack (emulators only), runs ``smoke_check`` against it, prints each step, and stops the stack.
``smoke_check`` touches every service the pipeline uses, the way the pipeline uses it:
publish + pull + ack on a tier's topic, a single-request GCS create with ``if_generation_match=0`` (and the 412 a
second create gets), a BigQuery load job from that object and a query over the loaded table.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from service.catalog import load_catalog
from service.local.clients import bigquery_client, pubsub_publisher, pubsub_subscriber, storage_client
from service.local.config import LocalConfig
from service.local.endpoints import Endpoints
from service.local.errors import LocalCloudError
from service.local.launcher import LocalCloud

Report = Callable[[str], None]


class SmokeFailed(LocalCloudError):
    """A smoke-check step did not behave as the pipeline needs."""


def smoke_check(endpoints: Endpoints, report: Report) -> None:
    """Exercise Pub/Sub, GCS and BigQuery of a running stack. Blocks for a few seconds.

    Raises:
        SmokeFailed: A step returned something unexpected (the message says which).
    """
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud import bigquery

    catalog = load_catalog(endpoints.catalog)
    tier = catalog.tiers[0].name
    run = uuid.uuid4().hex[:8]
    category = catalog.categories_in(tier)[0].name
    events = [{"event_id": f"{run}-{i}", "category": category, "n": i} for i in range(3)]
    total = sum(range(3))
    body = "\n".join(json.dumps(e) for e in events) + "\n"

    publisher, subscriber = pubsub_publisher(endpoints), pubsub_subscriber(endpoints)
    topic = publisher.topic_path(endpoints.project, catalog.topic(tier))
    sub = subscriber.subscription_path(endpoints.project, catalog.subscription(tier))
    message_id = publisher.publish(topic, body.encode(), smoke_run=run).result(timeout=10)
    report(f"pubsub: published message {message_id} ({len(body)} bytes) to {catalog.topic(tier)}")
    deadline, received = time.monotonic() + 20, None
    while received is None and time.monotonic() < deadline:
        for m in subscriber.pull(subscription=sub, max_messages=10, timeout=5).received_messages:
            subscriber.acknowledge(subscription=sub, ack_ids=[m.ack_id])
            if m.message.attributes.get("smoke_run") == run:
                received = m
    if received is None or received.message.data != body.encode():
        raise SmokeFailed(f"pubsub: message {message_id} did not come back on {catalog.subscription(tier)}")
    report(f"pubsub: pulled and acked it from {catalog.subscription(tier)}")
    subscriber.close()

    bucket = storage_client(endpoints).bucket(endpoints.bucket)
    blob = bucket.blob(f"smoke/{run}.jsonl")
    blob.upload_from_string(body, if_generation_match=0)
    report(f"gcs: created gs://{endpoints.bucket}/{blob.name} (generation {blob.generation})")
    try:
        bucket.blob(blob.name).upload_from_string(b"overwrite", if_generation_match=0)
        raise SmokeFailed("gcs: a second create with if_generation_match=0 succeeded; it must answer 412")
    except PreconditionFailed:
        if bucket.blob(blob.name).download_as_bytes() != body.encode():
            raise SmokeFailed("gcs: the 412 answer came, but the original object was overwritten") from None
        report("gcs: a second create of the same name answered 412 and kept the original")

    bq = bigquery_client(endpoints)
    table = f"{endpoints.project}.{endpoints.dataset}.smoke_{run}"
    config = bigquery.LoadJobConfig(
        source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
        schema=[
            bigquery.SchemaField("event_id", "STRING"),
            bigquery.SchemaField("category", "STRING"),
            bigquery.SchemaField("n", "INT64"),
        ],
    )
    job = bq.load_table_from_uri(
        f"gs://{endpoints.bucket}/{blob.name}", table, job_id=f"smoke-{run}", job_config=config
    )
    job.result(timeout=60)
    report(f"bigquery: load job {job.job_id} loaded {job.output_rows} rows into {table}")
    rows = list(bq.query(f"SELECT COUNT(DISTINCT event_id) AS n, SUM(n) AS total FROM `{table}`").result())
    if rows[0]["n"] != len(events) or rows[0]["total"] != total:
        raise SmokeFailed(f"bigquery: query returned {dict(rows[0])}, expected {len(events)} events")
    report(f"bigquery: query counted {rows[0]['n']} distinct events")
    bq.close()  # type: ignore[no-untyped-call]


def demo(state_dir: Path | None = None, console: Console | None = None) -> None:
    """Start a stack in ``state_dir`` (default: a temporary directory, removed afterwards), smoke-check it, stop it.

    Raises:
        LocalCloudError: The stack did not start, or a step failed. The stack is stopped either way.
    """
    console = console or Console()
    tmp = None if state_dir is not None else Path(tempfile.mkdtemp(prefix="logpipe-demo-"))
    config = LocalConfig(state_dir=state_dir or tmp or Path(".logpipe"), frontends=0, replicators=0, loaders=0)
    started = time.monotonic()
    try:
        with LocalCloud(config) as endpoints:
            console.print(f"local cloud ready in {time.monotonic() - started:.1f} s (state: {endpoints.state_dir})")
            smoke_check(endpoints, lambda line: console.print(f"  [green]ok[/green] {line}", highlight=False))
        console.print("stack stopped; smoke check passed")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
