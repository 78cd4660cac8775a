"""``logpipe dead-letters list|replay``: read a tier's dead letters with their reasons, and replay them.

Configuration as for ``logpipe replicate``: ``--project`` (env GOOGLE_CLOUD_PROJECT), ``--catalog`` (env
LOGPIPE_CATALOG) and, locally, PUBSUB_EMULATOR_HOST (``eval "$(logpipe env)"``). Exit codes: 0 done, 1 Pub/Sub
failed, 2 usage error. Heavy imports stay inside the functions so ``logpipe --help`` is fast.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer

from replicator.commands._common import _catalog, _one_line

app = typer.Typer(
    name="dead-letters",
    help="Read a tier's dead letters with their reasons, and replay them into the tier's topic.",
    no_args_is_help=True,
)

_TIER = typer.Option("--tier", help="Tier whose dead letters to read (repeatable); default: every tier.")
_PROJECT = typer.Option(help="Project (env GOOGLE_CLOUD_PROJECT).")
_CATALOG = typer.Option(help="Catalog YAML (env LOGPIPE_CATALOG).")
_MAX = typer.Option("--max", min=1, help="At most this many dead letters per tier.")


def _queues(
    tiers: list[str] | None, project: str | None, catalog: str | None, *, replay: bool
) -> list[tuple[str, Any]]:
    """(tier, ``DeadLetterQueue``) per selected tier; usage errors exit 2."""
    from replicator.clients import GRPC_OPTIONS
    from replicator.deadletters import DeadLetterQueue

    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    if not project:
        raise typer.BadParameter("missing --project (env GOOGLE_CLOUD_PROJECT)", param_hint="'--project'")
    cat = _catalog(catalog or os.environ.get("LOGPIPE_CATALOG") or None)
    known = [t.name for t in cat.tiers]
    unknown = sorted(set(tiers or ()) - set(known))
    if unknown:
        raise typer.BadParameter(f"unknown tiers {unknown}; the catalog has: {', '.join(known)}", param_hint="'--tier'")
    sub, pub = _clients(os.environ.get("PUBSUB_EMULATOR_HOST"), GRPC_OPTIONS, replay)
    return [
        (
            t,
            DeadLetterQueue(
                sub,
                sub.subscription_path(project, cat.dead_letter_subscription(t)),
                publisher=pub,
                topic_path=pub.topic_path(project, cat.topic(t)) if pub is not None else "",
            ),
        )
        for t in (tiers or known)
    ]


def _clients(emulator: str | None, options: Any, replay: bool) -> tuple[Any, Any]:
    from google.cloud import pubsub_v1

    if not emulator:
        return pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient() if replay else None
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    channel = grpc.insecure_channel(emulator, options=options)  # dead letters can be 10 MB: the default takes 4
    sub = pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))
    if not replay:
        return sub, None
    return sub, pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))


def _fail(tier: str, exc: Exception) -> typer.Exit:
    typer.echo(f"dead-letters {tier}: {_one_line(exc)}", err=True)
    return typer.Exit(1)


@app.command("list")
def list_(
    tier: Annotated[list[str] | None, _TIER] = None,
    project: Annotated[str | None, _PROJECT] = None,
    catalog: Annotated[str | None, _CATALOG] = None,
    limit: Annotated[int, _MAX] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")] = False,
) -> None:
    """List dead letters with their reason, category and envelope id. Nothing is removed.

    Reason `max_delivery_attempts`: Pub/Sub gave up delivering it (e.g. a GCS outage outlasted the attempts);
    replaying lands it. Any other reason: the replicator found the envelope unusable (`detail` says why)."""
    from rich.console import Console
    from rich.table import Table

    rows: list[dict[str, Any]] = []
    for t, queue in _queues(tier, project, catalog, replay=False):
        try:
            rows += [{"tier": t, **d.summary()} for d in queue.peek(limit)]
        except Exception as exc:
            raise _fail(t, exc) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, sort_keys=True))
        return
    cols = ["tier", "published", "reason", "category", "envelope_id", "bytes", "replayable", "detail"]
    table = Table(*cols, title=f"{len(rows)} dead letters", title_justify="left")
    for r in rows:
        table.add_row(*(str(r[c]) for c in cols))
    Console().print(table)


@app.command("replay")
def replay(
    tier: Annotated[list[str] | None, _TIER] = None,
    reason: Annotated[
        list[str] | None,
        typer.Option(
            help="Replay only dead letters with this reason (repeatable). Default: max_delivery_attempts, the "
            "messages Pub/Sub gave up on; poison envelopes come back unless their cause was fixed."
        ),
    ] = None,
    every_reason: Annotated[bool, typer.Option("--all", help="Replay dead letters of every reason.")] = False,
    project: Annotated[str | None, _PROJECT] = None,
    catalog: Annotated[str | None, _CATALOG] = None,
    limit: Annotated[int, _MAX] = 1000,
) -> None:
    """Republish dead letters to their tier's topic with their original data and attributes, then ack them.

    Safe to repeat or interrupt: a dead letter is acked only after its republish is confirmed, and landing is
    idempotent by envelope id, so a replay never duplicates an event. Prints one line per tier."""
    from replicator.deadletters import FORWARDED

    if every_reason and reason:
        raise typer.BadParameter("give either --reason or --all", param_hint="'--all'")
    reasons: tuple[str, ...] = () if every_reason else tuple(reason or (FORWARDED,))
    for t, queue in _queues(tier, project, catalog, replay=True):
        try:
            result = queue.replay(limit, reasons)
        except Exception as exc:
            raise _fail(t, exc) from None
        typer.echo(
            f"{t}: replayed {len(result.replayed)}, left {len(result.skipped)} of other reasons, "
            f"{len(result.unrestorable)} with attributes that cannot be restored"
        )
        for d in result.unrestorable:
            typer.echo(f"  not replayable: {d.message_id} ({d.reason}: {d.detail})")


def register(root: typer.Typer) -> None:
    """Add ``dead-letters`` to the ``logpipe`` command."""
    root.add_typer(app)
