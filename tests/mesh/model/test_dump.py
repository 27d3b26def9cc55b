"""``snapshot_to_dict`` writes the config format: it reads back to an equal snapshot."""

from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from lb import Affinity, Endpoint, PolicySpec
from mesh.model.dump import snapshot_to_dict
from mesh.model.parse import parse_snapshot, parse_snapshot_text
from mesh.model.snapshot import (
    Cluster,
    HeaderMatch,
    HeaderToAdd,
    Listener,
    QueryMatch,
    Route,
    RouteMatch,
    RouteTable,
    Snapshot,
    VirtualHost,
    WeightedCluster,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "sidecar-config.md"


def test_docs_example_round_trips_through_json() -> None:
    block = re.search(r"```yaml\n(.*?)```", DOCS.read_text(), re.S)
    assert block is not None
    snapshot = parse_snapshot_text(block.group(1))
    dumped = snapshot_to_dict(snapshot)
    assert parse_snapshot_text(json.dumps(dumped)) == snapshot
    assert dumped["route_tables"][0]["virtual_hosts"][0]["routes"][0]["timeout"] == "2.5s"
    assert dumped["clusters"][1]["lb"] == {
        "kind": "ring_hash",
        "affinity": {"kind": "cookie", "name": "sid", "cookie_ttl_s": 3600},
    }
    assert dumped["clusters"][1]["max_requests_per_connection"] == 100


def test_max_requests_per_connection_is_written_only_when_limited() -> None:
    limited = snapshot_to_dict(Snapshot("1", clusters={"a": Cluster("a", max_requests_per_connection=1)}))
    unlimited = snapshot_to_dict(Snapshot("1", clusters={"a": Cluster("a")}))
    assert limited["clusters"][0]["max_requests_per_connection"] == 1
    assert "max_requests_per_connection" not in unlimited["clusters"][0]  # 0: unlimited, the default
    assert parse_snapshot(limited).clusters["a"].max_requests_per_connection == 1


_NAME = st.sampled_from(["a", "b", "c-1", "inbound|80"])
_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8)
_PATH = _TEXT.map(lambda t: "/" + t)
_HEADER = st.sampled_from(["x-a", "x-b", "user-agent"])
_REGEX = st.sampled_from([re.compile(r"\d+"), re.compile("(?i)abc"), re.compile("a|b")])
_SECONDS = st.one_of(st.sampled_from([0.25, 1.0, 15.0, 90.0]), st.floats(0.001, 10_000, allow_nan=False))

_header_match = st.one_of(
    st.builds(HeaderMatch, _HEADER, exact=_TEXT, invert=st.booleans()),
    st.builds(HeaderMatch, _HEADER, prefix=_TEXT),
    st.builds(HeaderMatch, _HEADER, suffix=_TEXT),
    st.builds(HeaderMatch, _HEADER, regex=_REGEX),
    st.builds(HeaderMatch, _HEADER, present=st.booleans(), invert=st.booleans()),
    st.builds(HeaderMatch, _HEADER),
)
_query_match = st.one_of(
    st.builds(QueryMatch, _TEXT.filter(bool), exact=_TEXT),
    st.builds(QueryMatch, _TEXT.filter(bool), regex=_REGEX),
    st.builds(QueryMatch, _TEXT.filter(bool), present=st.booleans()),
)
_path: st.SearchStrategy[dict[str, object]] = st.one_of(
    st.fixed_dictionaries({}),
    st.fixed_dictionaries({"path_exact": _PATH}),
    st.fixed_dictionaries({"path_prefix": _PATH}),
    st.fixed_dictionaries({"path_regex": _REGEX}),
)
_match = st.builds(
    lambda path, **rest: RouteMatch(**path, **rest),
    _path,
    case_sensitive=st.booleans(),
    methods=st.frozensets(st.sampled_from(["GET", "POST", "PURGE"])),
    headers=st.lists(_header_match, max_size=3).map(tuple),
    query=st.lists(_query_match, max_size=2).map(tuple),
)
_header_add = st.builds(HeaderToAdd, _HEADER, _TEXT, st.booleans())


@st.composite
def snapshots(draw: st.DrawFn) -> Snapshot:
    cluster_names = draw(st.lists(_NAME, min_size=1, max_size=4, unique=True))
    clusters = {}
    for name in cluster_names:
        endpoints = draw(
            st.lists(
                st.builds(
                    lambda host, port, weight, healthy, meta: Endpoint(
                        f"[{host}]:{port}" if ":" in host else f"{host}:{port}", host, port, weight, healthy, meta
                    ),
                    st.sampled_from(["10.0.0.1", "::1", "web.local"]),
                    st.integers(1, 65535),
                    st.integers(1, 100),
                    st.booleans(),
                    st.lists(st.tuples(st.sampled_from(["k", "zone"]), _TEXT), max_size=2, unique_by=lambda kv: kv[0])
                    .map(sorted)
                    .map(tuple),
                ),
                max_size=3,
                unique_by=lambda e: e.key,
            )
        )
        policy = draw(
            st.one_of(
                st.just(PolicySpec()),
                st.builds(PolicySpec, kind=st.just("least_request"), choice_count=st.integers(2, 5)),
                st.builds(
                    PolicySpec,
                    kind=st.just("maglev"),
                    affinity=st.one_of(st.none(), st.just(Affinity("header", "x-user"))),
                ),
            )
        )
        clusters[name] = Cluster(
            name,
            policy,
            tuple(endpoints),
            connect_timeout_s=draw(_SECONDS),
            idle_timeout_s=draw(_SECONDS),
            max_connections_per_endpoint=draw(st.integers(1, 5000)),
            max_requests_per_connection=draw(st.sampled_from([0, 1, 100, 2**32 - 1])),
            service=draw(st.sampled_from(["", "web"])),
        )
    routes = tuple(
        Route(
            f"r{i}",
            draw(_match),
            tuple(
                WeightedCluster(n, draw(st.integers(1, 9)))
                for n in draw(st.lists(st.sampled_from(cluster_names), min_size=1, unique=True))
            ),
            timeout_s=draw(st.one_of(st.none(), _SECONDS)),
            request_headers_add=tuple(draw(st.lists(_header_add, max_size=2))),
            request_headers_remove=tuple(draw(st.lists(_HEADER, max_size=2))),
            response_headers_add=tuple(draw(st.lists(_header_add, max_size=2))),
            response_headers_remove=tuple(draw(st.lists(_HEADER, max_size=2))),
        )
        for i in range(draw(st.integers(0, 3)))
    )
    tables = {"t": RouteTable("t", (VirtualHost("v", ("*", "web:8080", "*.x"), routes),))}
    listeners = (Listener("out", "http", "127.0.0.1", draw(st.integers(0, 65535)), "outbound", route_table="t"),)
    return Snapshot(draw(st.sampled_from(["1", "sha256:abc"])), listeners, tables, clusters)


@settings(max_examples=150, deadline=None)
@given(snapshot=snapshots())
def test_any_snapshot_round_trips(snapshot: Snapshot) -> None:
    dumped = snapshot_to_dict(snapshot)
    assert parse_snapshot(dumped) == snapshot
    assert parse_snapshot(json.loads(json.dumps(dumped))) == snapshot
