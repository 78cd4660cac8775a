"""Install the DuckDB extensions shipped as wheels into ``<HOME>/.duckdb``, offline.

Run with the BigQuery emulator venv's interpreter (``make install-emulators`` does):
``.venv-bq/bin/python service/local/install_duckdb_extensions.py .venv-bq/duckdb-home``.
Idempotent. DuckDB installs an extension from a local file path without touching the network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

EXTENSIONS = ("icu", "json", "parquet", "httpfs", "avro", "ducklake", "spatial")


def main(home: Path) -> int:
    """Point HOME at ``home`` and ``INSTALL`` each extension from its wheel. Returns a process exit code."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = str(home.resolve())
    import duckdb  # type: ignore[import-not-found]

    con = duckdb.connect()
    for ext in EXTENSIONS:
        module = __import__(f"duckdb_extension_{ext}")
        files = sorted(Path(module.__path__[0]).rglob(f"{ext}.duckdb_extension"))
        if not files:
            print(f"duckdb-extension-{ext}: no .duckdb_extension file found", file=sys.stderr)
            return 1
        con.execute(f"INSTALL '{files[0]}'")
    con.execute("LOAD icu")
    print(f"installed DuckDB extensions {', '.join(EXTENSIONS)} under {home}/.duckdb")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
