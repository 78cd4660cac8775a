"""Generate the Python code for the contract in ``proto/`` into ``service/_gen``.

The generated modules are importable as ``service._gen.logpipe.v1.<name>_pb2`` (never under ``proto``, whose import
name belongs to proto-plus). protoc emits absolute imports such as ``from logpipe.v1 import event_pb2``; they are
rewritten to point into ``service._gen`` so that no top-level ``logpipe`` package is needed.

Run ``python -m service.protogen`` after editing a ``.proto`` file; ``tests/unit/test_protogen.py`` fails when the
committed code is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
GEN_ROOT = REPO / "service" / "_gen"
_IMPORT = re.compile(r"^from logpipe\.v1 import ", re.MULTILINE)


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    """All ``.proto`` sources under ``root``, sorted."""
    return sorted(root.rglob("*.proto"))


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc (from grpcio-tools) over every source and write the rewritten modules under ``out_dir``.

    Returns the generated files. Raises ``RuntimeError`` when protoc fails or grpcio-tools is missing.
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - dev dependency
        raise RuntimeError("grpcio-tools is missing: pip install -e '.[dev]'") from exc
    import importlib.resources

    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    sources = [str(p.relative_to(proto_root)) for p in proto_files(proto_root)]
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    generated: list[Path] = []
    for path in sorted(out_dir.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi"):
            continue
        text = _IMPORT.sub("from service._gen.logpipe.v1 import ", path.read_text())
        path.write_text(text)
        generated.append(path)
    for pkg in {p.parent for p in generated} | {out_dir, out_dir / "logpipe"}:
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated from proto/ by service.protogen; do not edit."""\n')
            generated.append(init)
    return sorted(generated)


def main() -> int:
    """Regenerate ``service/_gen`` in place."""
    files = generate(GEN_ROOT)
    for f in files:
        print(f.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
