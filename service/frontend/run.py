"""The ``logpipe serve`` entry point: read config once, build the real adapters, run until a signal, drain."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from service.catalog import CatalogError, load_catalog
from service.frontend import logs
from service.frontend.auth import load_tokens
from service.frontend.config import load_config
from service.frontend.errors import ConfigError
from service.frontend.spool import SpoolLocked

log = logging.getLogger("service.frontend")


def run_frontend(config_file: Path | None, env: Mapping[str, str], flags: Mapping[str, Any]) -> int:
    """Serve until SIGTERM/SIGINT. Returns the exit code (0 after a clean drain, 2 on bad config)."""
    from service.frontend.publisher import PubsubPublisher, make_pubsub_client
    from service.frontend.server import Frontend

    try:
        cfg = load_config(config_file, env, flags)
        logs.configure(cfg.log_level)
        cfg.check_security()
        if cfg.envelope_target_bytes + cfg.max_payload_bytes + 2 * cfg.max_attributes_bytes > 9_000_000:
            raise ConfigError("envelope_target_bytes + max_payload_bytes must stay below Pub/Sub's 10 MB message cap")
        catalog = load_catalog(cfg.catalog)
        auth = load_tokens(cfg.tokens_file)
    except (ConfigError, CatalogError) as exc:
        print(f"logpipe serve: {exc}", file=sys.stderr)
        return 2
    if cfg.malloc_keep_mib:
        keep_freed_memory(cfg.malloc_keep_mib * 1024 * 1024)
    publisher = PubsubPublisher(make_pubsub_client(cfg.pubsub_emulator_host), cfg.project, cfg.publish_timeout_s)
    frontend = Frontend(cfg, catalog, publisher, auth)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        frontend.start()
    except (SpoolLocked, OSError) as exc:
        log.error("cannot start", extra={"error": str(exc)})
        print(f"logpipe serve: {exc}", file=sys.stderr)
        frontend.shutdown(0)
        return 2
    # The hot path allocates many short-lived objects and no reference cycles worth collecting often: move what exists
    # now out of the collector's way and collect young objects less often (measured: ~4 % of CPU in gc otherwise).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # Handler threads each run a request's validation in Python (milliseconds each); a longer GIL switch interval lets
    # a thread finish its request instead of being forced off every 5 ms (measured +10-15 % events/s; docs/ingest.md).
    # Other threads still get the GIL whenever the holder blocks (zstd, locks, I/O).
    sys.setswitchinterval(cfg.gil_switch_interval_ms / 1000)
    while not stop.wait(1.0):
        pass
    frontend.shutdown()
    return 0


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's upper limit for it on 64-bit


def keep_freed_memory(trim_threshold: int) -> bool:
    """Make glibc reuse freed memory instead of unmapping it: True when both settings took effect.

    By default glibc serves blocks above a (dynamic) threshold with their own mmap and returns freed heap tops to the
    kernel, so every 1 MiB request buffer, upb arena, 2 MiB envelope and zstd context page-faults fresh, zeroed pages
    in (perf: a quarter of the process's CPU in the kernel, mostly page faults). With blocks up to 32 MiB taken from
    the heap and ``trim_threshold`` bytes of free heap kept, the pages are reused. Memory is still bounded (by what the
    process used at its peak plus ``trim_threshold``). No-op (False) where glibc's ``mallopt`` is missing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    ok_trim = mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    return bool(ok_mmap and ok_trim)
