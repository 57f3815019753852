"""The host's topic tree: read from the AsyncAPI document, the only place topics are spelled."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from kiosk_host.wire import topics
from kiosk_host.wire.topics import TopicError

ROOT = Path(__file__).resolve().parents[1]
DOC = yaml.safe_load((ROOT / "mqtt_schemas" / "asyncapi.yaml").read_text())
names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,31}", fullmatch=True)


def test_every_channel_of_the_document_is_in_the_tree_with_its_address() -> None:
    tree = topics.tree()
    assert {k: c.address for k, c in tree.channels.items()} == {
        k: c["address"] for k, c in DOC["channels"].items()
    }
    assert tree.everything == "kiosk/v1/#"


@given(store=names, device=names)
def test_a_made_topic_parses_back_to_its_channel_and_parameters(store: str, device: str) -> None:
    for key, channel in topics.tree().channels.items():
        params = {"store": store, "device": device}
        given_params = {p: params[p] for p in channel.params}
        made = topics.topic(key, **given_params)
        assert topics.parse(made) == (key, given_params)


def test_topics_as_the_kiosks_and_managers_know_them() -> None:
    assert topics.topic("event", store="store-12", device="till-1") == (
        "kiosk/v1/store-12/till-1/event"
    )
    assert topics.topic("alerts", store="store-12") == "kiosk/v1/store-12/alerts"
    assert topics.topic("hostStatus") == "kiosk/v1/_host/status"
    assert topics.topic_filter("status") == "kiosk/v1/+/+/status"
    assert topics.topic_filter("config", store="s1") == "kiosk/v1/s1/+/config"
    assert topics.parse("kiosk/v1/s1/d1/nothing") is None
    assert topics.parse("other/v1/s1/d1/event") is None


@pytest.mark.parametrize(
    ("key", "params", "says"),
    [
        ("nowhere", {}, "no channel 'nowhere'"),
        ("event", {"store": "s1"}, "takes store, device"),
        ("alerts", {"store": "s1", "device": "d1"}, "takes store"),
        ("event", {"store": "s1", "device": "+"}, "cannot stand in a topic"),
        ("event", {"store": "a/b", "device": "d1"}, "cannot stand in a topic"),
        ("cases", {"store": ""}, "cannot stand in a topic"),
    ],
)
def test_a_topic_the_contract_does_not_have_is_refused(
    key: str, params: dict[str, str], says: str
) -> None:
    with pytest.raises(TopicError, match=says):
        topics.topic(key, **params)


def _spelled_topics(path: Path) -> list[int]:
    """Lines of `path` where a string (not a docstring) spells a topic of the tree."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and "kiosk/v1" in node.value
        and id(node) not in docstrings
    ]


def test_no_module_of_the_host_spells_a_topic_by_hand() -> None:
    host = ROOT / "host" / "kiosk_host"
    spelled = {
        str(p.relative_to(host)): lines
        for p in sorted(host.rglob("*.py"))
        if "hardware" not in p.parts and (lines := _spelled_topics(p))
    }
    assert spelled == {}, "build topics with kiosk_host.wire.topics instead"
