"""``run_bench``: one run of ``logpipe bench replicate`` (see ``replicator.bench``), from starting the emulators to
the JSON report.

Phases, in order: 0. warm-up of the Pub/Sub emulator on a scratch subscription; 1. the two bare baselines (sync pull +
ack, and streaming pull whose callback only acks, on a twin subscription); 2. landing: a pre-filled backlog drained by
a real ``logpipe replicate --no-finalize`` child, with its RSS sampled and its progress read from its metrics; 3. one
``logpipe finalize --before now`` child. Each measured phase reports its CPU milliseconds per message by process.
Blocks for the whole run; raises ``RuntimeError`` when a child fails.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from replicator.bench_report import standin_ceiling, write_report

REPO = Path(__file__).resolve().parent.parent


def _metric(port: int, name: str) -> float:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return 0.0
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _provision(emu: Any, work: Path) -> tuple[Any, Path, str]:
    from replicator.bench_backlog import PROJECT
    from service.catalog import load_catalog
    from service.local import provision
    from service.local.endpoints import Endpoints

    data = yaml.safe_load((REPO / "deploy/terraform/catalog.yaml").read_text())
    data["name_prefix"] = "bench"
    cat_path = work / "catalog.yaml"
    cat_path.write_text(yaml.safe_dump(data))
    catalog = load_catalog(cat_path)
    ep = Endpoints(
        PROJECT,
        emu.pubsub_host,
        emu.gcs_url,
        "",
        "",
        "bench-landing",
        catalog.dataset,
        str(cat_path),
        str(work),
        os.getpid(),
        0.0,
    )
    provision.provision_pubsub(ep, catalog)
    provision.provision_bucket(ep, catalog)
    return catalog, cat_path, ep.bucket


def _twin_subscription(publisher: Any, subscriber: Any, sub: str, suffix: str = "baseline") -> tuple[str, str]:
    """A topic and subscription ``<name>-<suffix>`` with the settings of ``sub`` (ack deadline, exactly-once)."""
    original = subscriber.get_subscription(subscription=sub)
    topic, twin = f"{original.topic}-{suffix}", f"{sub}-{suffix}"
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={
            "name": twin,
            "topic": topic,
            "ack_deadline_seconds": original.ack_deadline_seconds,
            "enable_exactly_once_delivery": original.enable_exactly_once_delivery,
        }
    )
    return topic, twin


def _thin(series: list[Any], n: int) -> list[Any]:
    return series[:: max(1, len(series) // n)]


def _child_env(emu: Any, cat_path: Path, bucket: str) -> dict[str, str]:
    from replicator.bench_backlog import PROJECT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOGPIPE_", "PUBSUB_", "STORAGE_"))}
    env.update(
        {
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "PUBSUB_EMULATOR_HOST": emu.pubsub_host,
            "STORAGE_EMULATOR_HOST": emu.gcs_url,
            "LOGPIPE_BUCKET": bucket,
            "LOGPIPE_CATALOG": str(cat_path),
        }
    )
    return env


def run_bench(
    events: int,
    events_per_envelope: int,
    event_bytes: int,
    baseline_envelopes: int,
    out_dir: Path,
    warmup_envelopes: int = 1000,
) -> dict[str, Any]:
    from google.cloud import pubsub_v1

    from replicator.bench_backlog import (
        PROJECT,
        CpuMeter,
        RssSampler,
        bare_pull_ack,
        bare_streaming_ack,
        emulators,
        envelopes,
        fill_backlog,
    )
    from replicator.clients import GRPC_OPTIONS
    from replicator.config import ReplicatorConfig
    from service.local.procs import free_port

    hour = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    n_env = max(1, events // events_per_envelope)
    report: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(),
        "events_per_envelope": events_per_envelope,
        "event_bytes": event_bytes,
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg(),
        "warmup_envelopes": warmup_envelopes,
    }
    with tempfile.TemporaryDirectory(prefix="bench-replicate-") as tmp, emulators(Path(tmp)) as emu:
        work = Path(tmp)
        catalog, cat_path, bucket = _provision(emu, work)
        import grpc
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        publisher = pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emu.pubsub_host, options=GRPC_OPTIONS))
        )
        subscriber = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emu.pubsub_host, options=GRPC_OPTIONS))
        )
        topic = publisher.topic_path(PROJECT, catalog.topic("bulk"))
        sub = subscriber.subscription_path(PROJECT, catalog.subscription("bulk"))

        defaults = ReplicatorConfig(project=PROJECT, bucket=bucket)
        client_cpu = {"emulator": emu.pubsub_pid, "client": os.getpid()}

        # 0. Warm-up. The emulator is a fresh JVM: for its first minute or so its JIT compiler threads burn CPU
        # (measured: ~2 ms per message in the first 1000-message drain, ~0.1-0.4 ms after 3000), and that CPU is
        # taken from the 2 cores the measured loops share, charged to whichever phase runs longest. A real Pub/Sub
        # has no such start-up; both the baselines and the landing are measured after it (docs/replicator-perf.md).
        # Sync pull first, streaming last: the emulator keeps a closed stream's leases, which would stall a later
        # pull on the same subscription.
        if warmup_envelopes:
            warm_topic, warm_sub = _twin_subscription(publisher, subscriber, sub, "warmup")
            t = time.monotonic()
            with CpuMeter({"emulator": emu.pubsub_pid}, jit_of=emu.pubsub_pid) as warm:
                warm_envs = (warmup_envelopes, events_per_envelope, event_bytes, hour)
                fill_backlog(publisher, warm_topic, envelopes(*warm_envs, seed=97))
                bare_pull_ack(subscriber, warm_sub, warmup_envelopes, max_messages=8)
                fill_backlog(publisher, warm_topic, envelopes(*warm_envs, seed=96))
                bare_streaming_ack(
                    subscriber, warm_sub, warmup_envelopes, defaults.max_messages, defaults.max_bytes, defaults.threads
                )
            report["warmup"] = {"seconds": time.monotonic() - t, "cpu_seconds": warm.seconds}

        # 1. Baselines. A bare synchronous pull + ack loop on the same subscription, and a bare streaming pull whose
        # callback only acks (the worker's mechanism, flow control and threads). The streaming one runs on a twin
        # subscription: the emulator keeps a closed stream's leases (docs/local-cloud.md), which would stall the
        # worker's messages on the shared subscription for minutes.
        fill_backlog(publisher, topic, envelopes(baseline_envelopes, events_per_envelope, event_bytes, hour, seed=99))
        with CpuMeter(client_cpu, jit_of=emu.pubsub_pid) as cpu:
            report["bare_pull_ack"] = bare_pull_ack(subscriber, sub, baseline_envelopes, max_messages=8)
        report["bare_pull_ack"]["cpu_ms_per_message"] = cpu.ms_per(baseline_envelopes)
        twin_topic, twin_sub = _twin_subscription(publisher, subscriber, sub)
        fill_backlog(
            publisher, twin_topic, envelopes(baseline_envelopes, events_per_envelope, event_bytes, hour, seed=98)
        )
        with CpuMeter(client_cpu, jit_of=emu.pubsub_pid) as cpu:
            report["bare_streaming_ack"] = bare_streaming_ack(
                subscriber, twin_sub, baseline_envelopes, defaults.max_messages, defaults.max_bytes, defaults.threads
            )
        report["bare_streaming_ack"]["cpu_ms_per_message"] = cpu.ms_per(baseline_envelopes)

        # 2. Landing: fill the backlog, then one `logpipe replicate` drains it.
        t = time.monotonic()
        msgs, evs, size = fill_backlog(publisher, topic, envelopes(n_env, events_per_envelope, event_bytes, hour))
        report["backlog"] = {
            "messages": msgs,
            "events": evs,
            "mib": size / 2**20,
            "publish_seconds": time.monotonic() - t,
        }
        port = free_port()
        log = work / "replicate.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "service.cli",
                    "replicate",
                    "--tier",
                    "bulk",
                    "--no-finalize",
                    "--metrics-port",
                    str(port),
                ],
                env=_child_env(emu, cat_path, bucket),
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        landing_cpu = {"emulator": emu.pubsub_pid, "gcs": emu.gcs_pid, "worker": proc.pid}
        try:
            with RssSampler(proc.pid) as rss:
                while b"replicator ready" not in log.read_bytes():
                    if proc.poll() is not None:
                        raise RuntimeError(f"replicate exited: {log.read_text()[-2000:]}")
                    time.sleep(0.05)
                start = time.monotonic()
                progress: list[tuple[float, float]] = []
                opened = re.search(rb"replicator opening pulls cpu_seconds=([0-9.]+)", log.read_bytes())
                since = {"worker": float(opened.group(1))} if opened else None  # its pulls deliver before "ready"
                with CpuMeter(landing_cpu, jit_of=emu.pubsub_pid, since=since) as cpu:
                    while (acked := _metric(port, "logpipe_replicator_messages_acked_total")) < msgs:
                        progress.append((time.monotonic() - start, acked))
                        if proc.poll() is not None:
                            raise RuntimeError(f"replicate exited: {log.read_text()[-2000:]}")
                        time.sleep(0.25)
                    secs = time.monotonic() - start
            landed_bytes = _metric(port, "logpipe_replicator_bytes_landed_total")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        report["landing"] = {
            "seconds": secs,
            "events_per_s": evs / secs,
            "mib_per_s": landed_bytes / secs / 2**20,
            "messages_per_s": msgs / secs,
            "peak_rss_mib": rss.peak_mib,
            "rss_mib_series": [(round(x, 2), round(r / 2**20, 1)) for x, r in _thin(rss.samples, 200)],
            "acked_series": _thin(progress, 100),
            "cpu_ms_per_message": cpu.ms_per(msgs),
        }
        # Against the same-mechanism (streaming) baseline; the sync-pull ratio is reported too.
        report["landing"]["vs_bare_bytes"] = report["landing"]["mib_per_s"] / report["bare_streaming_ack"]["mib_per_s"]
        report["landing"]["vs_bare_sync_bytes"] = report["landing"]["mib_per_s"] / report["bare_pull_ack"]["mib_per_s"]
        report["landing"]["standin_ceiling"] = standin_ceiling(report, size / msgs / 2**20)

        # 3. Finalization of the landed partition, measured separately.
        t = time.monotonic()
        fin = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "finalize", "--before", "now", "--category", "app_log"],
            env=_child_env(emu, cat_path, bucket),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        with RssSampler(fin.pid) as frss:
            out_text, err_text = fin.communicate(timeout=3600)
        fsecs = time.monotonic() - t
        m = re.search(r"events=(\d+) files=(\d+) duplicates=(\d+)", out_text)
        if fin.returncode != 0 or not m:
            raise RuntimeError(f"finalize failed: {out_text}\n{err_text[-2000:]}")
        report["finalize"] = {
            "seconds": fsecs,
            "events": int(m.group(1)),
            "files": int(m.group(2)),
            "events_per_s": int(m.group(1)) / fsecs,
            "mib_per_s": size / fsecs / 2**20,
            "peak_rss_mib": frss.peak_mib,
        }
        publisher.transport.close()
        subscriber.close()
    return write_report(report, out_dir, "replicate")
