"""Redirect locations and host rewrites."""

from __future__ import annotations

import pytest

from mesh.model.policies import Redirect
from mesh.model.snapshot import RouteMatch
from sidecar.resilience.rewrite import redirect_location, rewritten_host, split_host

PREFIX = RouteMatch(path_prefix="/old/")


@pytest.mark.parametrize(
    ("redirect", "match", "authority", "path", "query", "location"),
    [
        (Redirect(scheme="https"), RouteMatch(), "api", "/a", "", "https://api/a"),
        (Redirect(scheme="https"), RouteMatch(), "api:80", "/a", "x=1", "https://api/a?x=1"),
        (Redirect(scheme="https"), RouteMatch(), "api:8080", "/a", "", "https://api:8080/a"),
        (Redirect(host="new.example"), RouteMatch(), "api:8080", "/a", "", "http://new.example/a"),
        (
            Redirect(host="new.example", port=8443, scheme="https"),
            RouteMatch(),
            "api",
            "/a",
            "",
            "https://new.example:8443/a",
        ),
        (Redirect(port=443, scheme="https"), RouteMatch(), "api", "/", "", "https://api/"),
        (Redirect(path="/moved"), RouteMatch(), "api", "/a/b", "q=2", "http://api/moved?q=2"),
        (Redirect(path="/moved", strip_query=True), RouteMatch(), "api", "/a", "q=2", "http://api/moved"),
        (Redirect(prefix_rewrite="/new/"), PREFIX, "api", "/old/x/y", "", "http://api/new/x/y"),
        (Redirect(prefix_rewrite="/v2"), RouteMatch(path_exact="/v1"), "api", "/v1", "", "http://api/v2"),
        (Redirect(prefix_rewrite="/p"), RouteMatch(), "api", "/x", "", "http://api/p/x"),
        (Redirect(), RouteMatch(), "[::1]:8080", "/a", "", "http://[::1]:8080/a"),
        (Redirect(response_code=308), RouteMatch(), "api", "/a", "", "http://api/a"),
    ],
)
def test_redirect_location(
    redirect: Redirect, match: RouteMatch, authority: str, path: str, query: str, location: str
) -> None:
    assert redirect_location(redirect, match, scheme="http", authority=authority, path=path, query=query) == location


def test_split_host() -> None:
    assert split_host("api") == ("api", None)
    assert split_host("api:81") == ("api", 81)
    assert split_host("[::1]") == ("[::1]", None)
    assert split_host("[::1]:81") == ("[::1]", 81)


def test_host_rewrite() -> None:
    assert rewritten_host(None, "api") == "api"
    assert rewritten_host("api.internal", "api") == "api.internal"
