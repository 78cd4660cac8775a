"""Sub-commands of ``logpipe`` for the replicator: ``replicate``, ``finalize``, ``partitions``, ``dead-letters``.

The CLI/environment contract is documented in docs/design.md ("CLI and environment contract"). Heavy imports stay
inside the command functions so ``logpipe --help`` is fast.

One module per command: ``replicate.py`` (the worker), ``finalize.py`` (one finalization pass), ``partitions.py``
(list partitions), ``deadletters.py`` (read and replay dead letters); ``_common.py`` has what they share
(``setup_logging``, config and catalog from the flags and the environment, usage errors).
"""

from __future__ import annotations

import typer

from replicator.commands import deadletters, finalize, partitions, replicate
from replicator.commands._common import setup_logging as setup_logging  # used by ``logpipe load`` too


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
    app.command("replicate")(replicate.replicate)
    app.command("finalize")(finalize.finalize)
    app.command("partitions")(partitions.partitions)
    deadletters.register(app)
