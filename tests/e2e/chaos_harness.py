"""The chaos run: a real pipeline (2+ front-ends, 2+ replicators, a BigQuery loader) under seeded faults.

Faults (all real): SIGKILL of replicators (>= ``replicator_kills`` times) and of the loader, SIGKILL of one
front-end, Pub/Sub cut off from the front-ends through a TCP proxy for ``pubsub_cut_s`` (they spool), GCS faults
(5xx/429, delays, resets) through an HTTP proxy in front of fake-gcs-server for replicators and loader.
After the load: heal, drain spools, finalize, and judge acked = landed (manifests) = queried (BigQuery).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.http_proxy import FaultProxy, FaultRule
from faults.tcp_proxy import TcpProxy

from service.catalog import default_catalog_path, load_catalog
from service.client import ClientOptions, IngestClient
from service.demo import workload
from service.demo.loadgen import LoadResult, run_load
from service.demo.pipeline import Pipeline, PipelineConfig
from service.demo.reconcile import Verdict, judge, read_bigquery, read_committed
from service.local.clients import bigquery_client, storage_client


@dataclass(frozen=True)
class ChaosConfig:
    """Size and fault plan of one run. ``seed`` makes the fault schedule and the workload reproducible."""

    seed: int
    events: int = 20_000
    duration_s: float = 40.0
    frontends: int = 2
    replicators: int = 2
    replicator_kills: int = 4
    pubsub_cut_s: float = 10.0
    gcs_error_rate: float = 0.05
    drain_timeout_s: float = 600.0
    spread_s: float = 3600.0
    finalize_interval_s: float = 10.0


@dataclass
class ChaosReport:
    config: ChaosConfig
    load: LoadResult = field(default_factory=LoadResult)
    faults: list[str] = field(default_factory=list)
    invalid_expected: dict[str, str] = field(default_factory=dict)
    invalid_reported: dict[str, str] = field(default_factory=dict)
    gcs: Verdict | None = None
    bigquery: Verdict | None = None
    gcs_fault_counts: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    dead_lettered_ids: set[str] = field(default_factory=set)
    undelivered_ids: set[str] = field(default_factory=set)
    unexpected_exits: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        c, ld = self.config, self.load
        out = [
            f"seed={c.seed} (replay: LOGPIPE_CHAOS_SEED={c.seed})",
            f"sent={ld.sent + len(self.invalid_expected)} acked={len(ld.acked)} "
            f"rejected={len(ld.rejected) + len(self.invalid_reported)} failed={len(ld.failed)}",
        ]
        if self.gcs:
            out.append(f"landed (GCS manifests): {self.gcs.summary()}")
        if self.bigquery:
            out.append(f"queried (BigQuery):     {self.bigquery.summary()}")
        out.append(f"faults injected ({len(self.faults)}): " + "; ".join(self.faults))
        out.append(f"GCS proxy faults: {self.gcs_fault_counts}")
        out.append(f"processes found dead before their planned kill: {self.unexpected_exits or 'none'}")
        lost = set(self.gcs.lost) if self.gcs else set()
        out.append(
            f"dead-letter topics: {self.dead_lettered} ({len(self.dead_lettered_ids)} events, "
            f"{len(lost & self.dead_lettered_ids)} of the {len(lost)} missing ones)"
        )
        if lost:
            out.append(
                f"missing events still undelivered in Pub/Sub after the drain: {len(lost & self.undelivered_ids)} "
                f"of {len(lost)} (the emulator keeps redelivering to dead streams; see docs/design.md)"
            )
        return out


class _Faults(threading.Thread):
    """Executes the seeded fault schedule against the pipeline while the load runs."""

    def __init__(self, pipe: Pipeline, pubsub: TcpProxy, cfg: ChaosConfig, report: ChaosReport) -> None:
        super().__init__(name="chaos-faults", daemon=True)
        self.pipe, self.pubsub, self.cfg, self.report = pipe, pubsub, cfg, report
        self.rng = random.Random(cfg.seed)
        self.error: BaseException | None = None
        self.done = threading.Event()

    def plan(self) -> list[tuple[float, str, str]]:
        d, rng = self.cfg.duration_s, self.rng
        plan = [(rng.uniform(0.05, 0.9) * d, "kill", rng.choice(self.pipe.names("replicator")))
                for _ in range(self.cfg.replicator_kills)]  # fmt: skip
        plan.append((rng.uniform(0.2, 0.8) * d, "kill", "loader-0"))
        plan.append((rng.uniform(0.55, 0.7) * d, "kill", rng.choice(self.pipe.names("frontend"))))
        plan.append((rng.uniform(0.15, 0.3) * d, "cut", "pubsub"))
        return sorted(plan)

    def run(self) -> None:
        try:
            t0 = time.monotonic()
            for at, action, target in self.plan():
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                if action == "cut":
                    self.pubsub.set_mode("refuse")
                    self.report.faults.append(f"t={at:.0f}s pubsub cut {self.cfg.pubsub_cut_s:.0f}s")
                    threading.Timer(self.cfg.pubsub_cut_s, self.pubsub.set_mode, ("pass",)).start()
                    continue
                if not self.pipe.alive(target):  # it exited on its own: a finding; bring it back, then kill it
                    self.report.unexpected_exits.append(f"t={time.monotonic() - t0:.0f}s {target}")
                    self.pipe.restart(target, wait=target.startswith("frontend"))
                    time.sleep(self.rng.uniform(0.5, 2.0))
                self.pipe.kill(target)
                self.report.faults.append(f"t={at:.0f}s SIGKILL {target}")
                time.sleep(self.rng.uniform(0.5, 2.0))
                self.pipe.restart(target, wait=target.startswith("frontend"))
        except BaseException as exc:  # surfaced by the test
            self.error = exc
        finally:
            self.done.set()


def _send_invalid(targets: list[str], seed: int, report: ChaosReport) -> None:
    catalog = load_catalog()
    bad = workload.invalid_events(catalog, seed=seed, now=dt.datetime.now(dt.UTC))
    report.invalid_expected.update({e.event_id: e.expect for e in bad})
    # The SDK refuses payloads over its own 1 MiB cap locally; the oversized case must reach the front-end, whose
    # PAYLOAD_TOO_LARGE is what this checks.
    with IngestClient(targets, options=ClientOptions(max_payload_bytes=8 * 1024 * 1024)) as client:
        for e in bad:
            client.send(e.category, e.payload, event_time=e.event_time, event_id=e.event_id)
        res = client.flush()
    report.invalid_reported.update({r.event_id: r.code for r in res.rejected})


def _spools_empty(pipe: Pipeline) -> bool:
    return all(not any(p.is_file() for p in pipe.spool_dir(n).rglob("*")) for n in pipe.names("frontend"))


_log = functools.partial(print, flush=True)  # progress lines appear at once, even with output to a file


def _finalize(env: dict[str, str], log: Any) -> None:
    """One ``logpipe finalize`` pass. A failed pass (it exits 1 when a partition failed) is logged with its stderr;
    the caller's loop runs another one, and the verdict, not this exit code, decides the test."""
    before = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "service.cli", "finalize", "--before", before], env=env,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    log(f"chaos: logpipe finalize pass took {time.monotonic() - t0:.0f}s (exit {res.returncode})")
    if res.returncode != 0:
        log(f"chaos: logpipe finalize exited {res.returncode}: {res.stderr.strip()[-2000:]}")


def _drain_dead_letters(ep: Any, report: ChaosReport) -> None:
    """Pull every tier's dead-letter subscription: what Pub/Sub gave up on, or the replicator judged poison."""
    from service.envelope import PoisonEnvelope, decode
    from service.local.clients import pubsub_subscriber

    catalog = load_catalog()
    sub = pubsub_subscriber(ep)
    for tier in catalog.tiers:
        path = sub.subscription_path(ep.project, catalog.dead_letter_subscription(tier.name))
        while True:
            resp = sub.pull(request={"subscription": path, "max_messages": 50}, timeout=10)
            if not resp.received_messages:
                break
            for rm in resp.received_messages:
                reason = rm.message.attributes.get("reason", "max_delivery_attempts")
                report.dead_lettered[reason] = report.dead_lettered.get(reason, 0) + 1
                try:
                    env = decode(rm.message.data, dict(rm.message.attributes))
                    report.dead_lettered_ids.update(e.event_id for e in env.events)
                except PoisonEnvelope:
                    pass
            sub.acknowledge(request={"subscription": path, "ack_ids": [m.ack_id for m in resp.received_messages]})


def _peek_undelivered(ep: Any, report: ChaosReport) -> None:
    """Diagnostics when events are missing: pull the main subscriptions once, note event ids, nack them back."""
    from service.envelope import PoisonEnvelope, decode
    from service.local.clients import pubsub_subscriber

    catalog = load_catalog()
    sub = pubsub_subscriber(ep)
    for tier in catalog.tiers:
        path = sub.subscription_path(ep.project, catalog.subscription(tier.name))
        for _ in range(20):
            resp = sub.pull(request={"subscription": path, "max_messages": 50}, timeout=10)
            if not resp.received_messages:
                break
            for rm in resp.received_messages:
                try:
                    env = decode(rm.message.data, dict(rm.message.attributes))
                    report.undelivered_ids.update(e.event_id for e in env.events)
                except PoisonEnvelope:
                    pass
            ack_ids = [m.ack_id for m in resp.received_messages]
            sub.modify_ack_deadline(request={"subscription": path, "ack_ids": ack_ids, "ack_deadline_seconds": 0})


def run_chaos(cfg: ChaosConfig, state_dir: Path, log: Any = _log) -> ChaosReport:
    """Run the whole chaos scenario; the returned report holds both verdicts."""
    report = ChaosReport(cfg)
    catalog = load_catalog()
    pipe = Pipeline(
        PipelineConfig(
            state_dir=state_dir, frontends=cfg.frontends, replicators=cfg.replicators, loaders=1,
            # Lease extensions of 10 s (default 60): the emulator keeps a killed worker's stream as a zombie that
            # holds the messages it is given for one stream ack deadline, again and again (docs/local-cloud.md);
            # a shorter deadline makes each such round 6x shorter. Real Pub/Sub notices the closed stream.
            # Finalization claims of 20 s (default 180): a killed worker's claims are taken over within the run.
            replicator_args=("--lateness-seconds", "0", "--finalize-interval", str(cfg.finalize_interval_s),
                             "--drain-timeout", "5", "--lease-extension-seconds", "10",
                             "--finalize-claim-seconds", "20"),
            loader_args=("--interval", "5"), frontend_args=(),
        )
    )  # fmt: skip
    ep = pipe.start_cloud()
    gcs: FaultProxy | None = None
    try:
        host, port = ep.pubsub_host.rsplit(":", 1)
        gcs = FaultProxy(ep.gcs_url, seed=cfg.seed).start()
        with TcpProxy(host, int(port)) as pubsub:
            gcs_env = {"STORAGE_EMULATOR_HOST": gcs.url}
            pipe.start_apps(
                frontend_env={"PUBSUB_EMULATOR_HOST": pubsub.address, "LOGPIPE_PUBLISH_TIMEOUT_S": "3"},
                replicator_env=gcs_env,
                loader_env=gcs_env,
            )
            log(f"chaos: seed={cfg.seed} events={cfg.events} over {cfg.duration_s:.0f}s, targets={pipe.ingest_targets}")
            r = cfg.gcs_error_rate
            gcs.add(
                FaultRule("status:503", times=-1, probability=r / 3),
                FaultRule("status:500", times=-1, probability=r / 3),
                FaultRule("status:429", times=-1, probability=r / 3),
                FaultRule("reset", times=-1, probability=0.01),
                FaultRule("reset_after", times=-1, probability=0.01),
                FaultRule("delay:2", times=-1, probability=0.01),
            )
            faults = _Faults(pipe, pubsub, cfg, report)
            faults.start()
            _send_invalid(pipe.ingest_targets, cfg.seed, report)
            report.load = run_load(
                pipe.ingest_targets, catalog=str(default_catalog_path()), rate=cfg.events / cfg.duration_s,
                duration_s=cfg.duration_s, workers=2, seed=cfg.seed, rpc_timeout_s=3.0, retry_deadline_s=240.0,
                spread_s=cfg.spread_s, probe_every=10**9,
            )  # fmt: skip
            faults.done.wait(timeout=cfg.duration_s + 60)
            if faults.error:
                raise faults.error
            gcs.clear()
            pubsub.set_mode("pass")
            report.gcs_fault_counts = dict(gcs.counts)
            t_load = time.monotonic()
            log(f"chaos: load done, acked {len(report.load.acked)}; " + "; ".join(report.faults))
            deadline = time.monotonic() + cfg.drain_timeout_s
            while not _spools_empty(pipe) and time.monotonic() < deadline:
                time.sleep(1)
            log(f"chaos: spools drained after {time.monotonic() - t_load:.0f}s")
            env = {**os.environ, **ep.env()}
            storage = storage_client(ep)
            while True:
                _finalize(env, log)
                back = read_committed(storage, ep.bucket, catalog)
                report.gcs = judge(report.load.acked, back.ids, back.problems, maybe=report.load.failed)
                if not report.gcs.lost or time.monotonic() > deadline:
                    break
                time.sleep(3)
            log(f"chaos: GCS verdict after {time.monotonic() - t_load:.0f}s: {report.gcs.summary()}")
            bq = bigquery_client(ep)
            while True:
                ids, _ = read_bigquery(bq, catalog)
                report.bigquery = judge(report.load.acked, ids, maybe=report.load.failed)
                if not report.bigquery.lost or time.monotonic() > deadline:
                    break
                time.sleep(3)
            log(f"chaos: BigQuery verdict after {time.monotonic() - t_load:.0f}s: {report.bigquery.summary()}")
            _drain_dead_letters(ep, report)
            if report.gcs.lost:
                _peek_undelivered(ep, report)
    finally:
        pipe.stop()
        if gcs is not None:
            gcs.stop()
    return report
