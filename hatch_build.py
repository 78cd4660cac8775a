"""Build hook: compiles logpipe's small C accelerators (``service/**/_*.c``, ``replicator/**/_*.c``).

Each ``<dir>/_name.c`` becomes the extension module ``<dir as package>._name``, built in place next to its source, so
editable installs (``make install``) import it from the tree, and wheels ship it (the wheel is then tagged for the
building interpreter and platform). Every accelerator has a pure-Python reference implementation that is used when
the module is missing, and tests compare the two (docs/design.md, Decisions: "C accelerators"). A compiler failure
fails the build: a silently slower install would hide itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGES = ("service", "replicator")


def sources(root: Path) -> list[Path]:
    """The C sources of extension modules, relative to ``root``."""
    return sorted(p.relative_to(root) for pkg in PACKAGES for p in (root / pkg).rglob("_*.c"))


class CustomBuildHook(BuildHookInterface):  # type: ignore[misc]
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext

        root = Path(self.root)
        srcs = sources(root)
        if not srcs:
            return
        exts = [
            Extension(".".join(s.with_suffix("").parts), [str(s)], extra_compile_args=["-O2", "-std=c11"]) for s in srcs
        ]
        dist = Distribution({"name": "logpipe-native", "ext_modules": exts})
        cmd = build_ext(dist)
        cmd.inplace = True
        cmd.ensure_finalized()
        cmd.run()
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            for ext in exts:
                rel = Path(cmd.get_ext_fullpath(ext.name)).resolve().relative_to(root.resolve())
                build_data["force_include"][str(rel)] = str(rel)
