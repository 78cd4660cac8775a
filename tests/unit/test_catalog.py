"""The catalog loader: the shipped file is valid, names derive as Terraform expects, bad input is named precisely."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from service.catalog import Catalog, CatalogError, default_catalog_path, load_catalog, parse_catalog

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _base() -> dict[str, Any]:
    return {
        "name_prefix": "lp",
        "dataset": "ds",
        "tiers": [{"name": "core", "ack_deadline_seconds": 30, "max_delivery_attempts": 7}],
        "categories": [{"name": "ads_click", "tier": "core", "fields": [{"name": "user_id", "type": "STRING"}]}],
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    """A copy of ``_base()`` with the dotted ``path`` (list indexes as numbers) set to ``value``."""
    data = copy.deepcopy(_base())
    *parents, last = path.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return data


def test_default_catalog_is_the_terraform_file_and_loads() -> None:
    assert default_catalog_path() == REPO / "deploy" / "terraform" / "catalog.yaml"
    cat = load_catalog()
    assert cat.tiers and cat.categories
    for c in cat.categories:
        assert c.tier in {t.name for t in cat.tiers}


def test_resource_names_follow_the_documented_rules() -> None:
    cat = parse_catalog(_base())
    assert cat.topic("core") == "lp-core"
    assert cat.subscription("core") == "lp-core-replicator"
    assert cat.dead_letter_topic("core") == "lp-core-dead-letter"
    assert cat.dead_letter_subscription("core") == "lp-core-dead-letter-sub"
    assert cat.dataset == "ds"


def test_lookups() -> None:
    cat = parse_catalog(_base())
    assert cat.category("ads_click").tier == "core"
    assert cat.tier("core").max_delivery_attempts == 7
    assert [c.name for c in cat.categories_in("core")] == ["ads_click"]
    assert set(cat.by_name) == {"ads_click"}
    with pytest.raises(KeyError):
        cat.category("nope")
    with pytest.raises(KeyError):
        cat.tier("nope")


def test_catalog_is_frozen() -> None:
    cat = parse_catalog(_base())
    with pytest.raises(ValidationError):
        cat.dataset = "other"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("categories.0.tier", "missing", "unknown tier 'missing'"),
        ("categories.0.name", "Bad-Name", "category name 'Bad-Name'"),
        ("tiers.0.name", "x", "tier name 'x'"),
        ("tiers.0.max_delivery_attempts", 4, "max_delivery_attempts"),
        ("tiers.0.ack_deadline_seconds", 5, "ack_deadline_seconds"),
        ("categories.0.fields", [{"name": "event_id", "type": "STRING"}], "clash with built-in columns"),
        ("categories.0.fields", [{"name": "a", "type": "STRING"}, {"name": "a", "type": "INT64"}], "duplicate"),
        ("categories.0.fields", [{"name": "a", "type": "DATE"}], "fields.0.type"),
        ("categories.0.clustering", ["nope"], "clustering columns ['nope']"),
        ("categories.0.clustering", ["event_id", "event_time", "producer", "client_id", "user_id"], "at most 4"),
        ("categories.0.unknown_key", 1, "unknown_key"),
    ],
)
def test_invalid_entries_are_named(path: str, value: Any, message: str) -> None:
    with pytest.raises(CatalogError, match="<catalog>") as exc:
        parse_catalog(_with(path, value))
    assert message in str(exc.value)


def test_fields_need_json_payloads() -> None:
    with pytest.raises(CatalogError, match="only be extracted from json"):
        parse_catalog(_with("categories.0.payload_format", "bytes"))


def test_duplicate_names_are_refused() -> None:
    data = _base()
    data["categories"].append(dict(data["categories"][0]))
    with pytest.raises(CatalogError, match="category names must be unique"):
        parse_catalog(data)
    data = _base()
    data["tiers"].append(dict(data["tiers"][0]))
    with pytest.raises(CatalogError, match="tier names must be unique"):
        parse_catalog(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog"):
        load_catalog(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [unclosed\n")
    with pytest.raises(CatalogError, match="not valid YAML"):
        load_catalog(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(CatalogError, match="expected a mapping"):
        load_catalog(scalar)


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(_base()))
    assert load_catalog(path) == parse_catalog(_base())
    assert isinstance(load_catalog(path), Catalog)
