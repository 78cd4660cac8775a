"""The loader's dataset step: get first, create only when missing (least privilege), and learn the location."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from google.api_core import exceptions as gexc

from replicator.bigquery.tables import _ensure_dataset

pytestmark = pytest.mark.unit


class DatasetClient:
    """Like BigQuery for a loader with only dataset-level roles: creating a dataset is refused (403) even when it
    exists, because ``bigquery.datasets.create`` is checked on the project first."""

    def __init__(self, existing: dict[str, str], may_create: bool) -> None:
        self.existing = dict(existing)  # dataset ref -> location
        self.may_create = may_create
        self.created: list[str] = []

    def get_dataset(self, ref: str) -> Any:
        if ref not in self.existing:
            raise gexc.NotFound(f"Not found: Dataset {ref}")  # type: ignore[no-untyped-call]
        return SimpleNamespace(location=self.existing[ref])

    def create_dataset(self, ref: str, exists_ok: bool = False) -> Any:
        if not self.may_create:
            raise gexc.Forbidden("Access Denied: bigquery.datasets.create")  # type: ignore[no-untyped-call]
        self.created.append(ref)
        self.existing.setdefault(ref, "US")
        return SimpleNamespace(location=self.existing[ref])


def test_an_existing_dataset_is_not_created_again_and_gives_its_location() -> None:
    client = DatasetClient({"p.logs": "europe-west4"}, may_create=False)
    assert _ensure_dataset(client, "p.logs") == "europe-west4"  # type: ignore[arg-type]
    assert client.created == []


def test_a_missing_dataset_is_created() -> None:
    client = DatasetClient({}, may_create=True)
    assert _ensure_dataset(client, "p.logs") == "US"  # type: ignore[arg-type]
    assert client.created == ["p.logs"]


def test_a_missing_dataset_without_the_right_to_create_it_is_an_error() -> None:
    with pytest.raises(gexc.Forbidden):
        _ensure_dataset(DatasetClient({}, may_create=False), "p.logs")  # type: ignore[arg-type]
