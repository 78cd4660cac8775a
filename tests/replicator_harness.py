"""Shared helpers of the replicator's integration, e2e and fault tests (tests/*/test_replicator_*.py).

``Isolated`` gives each test its own topics, subscriptions and bucket on the session's local cloud, by writing a copy
of the catalog with a unique ``name_prefix`` and provisioning it, so tests never see each other's messages.
Replicators run as real ``logpipe replicate`` child processes (own process group), stopped by PID.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from replicator.layout import Layout
from replicator.records import decode_rows
from replicator.scan import list_manifests
from replicator.store_gcs import GcsStore
from service.catalog import Catalog, load_catalog
from service.envelope import EncodedEnvelope
from service.local import clients, provision
from service.local.endpoints import Endpoints

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass
class Isolated:
    endpoints: Endpoints
    catalog: Catalog
    catalog_path: Path
    bucket: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = dataclasses.field(default_factory=list)
    logs: list[Path] = dataclasses.field(default_factory=list)

    @property
    def project(self) -> str:
        return self.endpoints.project

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGPIPE_", "PUBSUB_", "STORAGE_"))}
        env.update(self.endpoints.env())
        env.update({"LOGPIPE_BUCKET": self.bucket, "LOGPIPE_CATALOG": str(self.catalog_path)})
        env.update(extra)
        return env

    def store(self) -> GcsStore:
        return GcsStore(clients.storage_client(self.endpoints), self.bucket)

    # --- Pub/Sub -------------------------------------------------------------------------------------------------
    def publish(
        self, tier: str, envelopes: Iterable[EncodedEnvelope], *, raw: Iterable[tuple[bytes, dict[str, str]]] = ()
    ) -> None:
        pub = clients.pubsub_publisher(self.endpoints)
        topic = pub.topic_path(self.project, self.catalog.topic(tier))
        futures = [pub.publish(topic, e.data, **e.attributes) for e in envelopes]
        futures += [pub.publish(topic, data, **attrs) for data, attrs in raw]
        for f in futures:
            f.result(timeout=60)
        pub.transport.close()

    def pull_dead_letters(self, tier: str, want: int, timeout: float = 30) -> list[Any]:
        sub = clients.pubsub_subscriber(self.endpoints)
        path = sub.subscription_path(self.project, self.catalog.dead_letter_subscription(tier))
        got: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            resp = sub.pull(subscription=path, max_messages=50, timeout=5)
            if resp.received_messages:
                got += [m.message for m in resp.received_messages]
                sub.acknowledge(subscription=path, ack_ids=[m.ack_id for m in resp.received_messages])
        sub.close()
        return got

    # --- processes -----------------------------------------------------------------------------------------------
    def start_replicator(
        self,
        *args: str,
        crash_at: str | None = None,
        name: str = "rep",
        wait_ready: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        extra = {"LOGPIPE_CRASH_AT": crash_at} if crash_at else {}
        log_path = self.workdir / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:  # the child keeps its own descriptor
            p = subprocess.Popen(
                [sys.executable, "-m", "service.cli", "replicate", *args],
                env=env or self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        self.logs.append(log_path)
        self.procs.append(p)
        if wait_ready:
            wait_for(lambda: b"replicator ready" in log_path.read_bytes() or p.poll() is not None, 60)
            assert p.poll() is None, log_path.read_text()
        return p

    def finalize(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cli("finalize", *args, crash_at=crash_at)

    def cli(self, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
        extra = {"LOGPIPE_CRASH_AT": crash_at} if crash_at else {}
        return subprocess.run(
            [sys.executable, "-m", "service.cli", *args],
            env=self.env(**extra),
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=300,
        )

    def logs_tail(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text().splitlines()[-lines:]) for p in self.logs)

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)

    # --- reading back --------------------------------------------------------------------------------------------
    def committed(self, categories: Iterable[str] | None = None) -> collections.Counter[str]:
        """event_id -> how many times it appears in committed files (following the manifests only)."""
        store = self.store()
        cats = list(categories or (c.name for c in self.catalog.categories))
        counts: collections.Counter[str] = collections.Counter()
        for _, m in list_manifests(store, cats):
            cat = self.catalog.category(m.category)
            for f in m.files:
                counts.update(r["event_id"] for r in decode_rows(store.read(f.name), cat))
        return counts

    def staged(self) -> list[str]:
        return [o.name for o in self.store().list(Layout().staging_prefix + "/")]


def isolated(
    endpoints: Endpoints,
    workdir: Path,
    *,
    ack_deadline: int | None = None,
    max_delivery_attempts: int | None = None,
    finalize_shards: int | None = None,
) -> Isolated:
    """Provision a fresh catalog prefix (topics, subscriptions, dead-letter) and bucket for one test; ``ack_deadline``
    and ``max_delivery_attempts`` replace every tier's, ``finalize_shards`` every category's."""
    tag = uuid.uuid4().hex[:8]
    data = yaml.safe_load((REPO / "deploy/terraform/catalog.yaml").read_text())
    data["name_prefix"] = f"t{tag}"
    for t in data["tiers"]:
        if ack_deadline is not None:
            t["ack_deadline_seconds"] = ack_deadline
        if max_delivery_attempts is not None:
            t["max_delivery_attempts"] = max_delivery_attempts
    for c in data["categories"]:
        if finalize_shards is not None:
            c["finalize_shards"] = finalize_shards
    path = workdir / "catalog.yaml"
    path.write_text(yaml.safe_dump(data))
    catalog = load_catalog(path)
    bucket = f"rep-{tag}"
    ep = dataclasses.replace(endpoints, bucket=bucket)
    provision.provision_pubsub(ep, catalog)
    provision.provision_bucket(ep, catalog)
    return Isolated(ep, catalog, path, bucket, workdir)


def wait_for(cond: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
