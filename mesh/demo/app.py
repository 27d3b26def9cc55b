"""One Bookinfo-like workload: ``python -m mesh.demo.app --service reviews --version v2 --port P --outbound H:P``.

Like Istio's Bookinfo: ``productpage`` shows a book with its ``details`` and ``reviews``;
``reviews`` v1 shows no stars, v2 black and v3 red stars from ``ratings``. Every answer names the
workload that served it (``served_by``, header ``x-served-by``). Calls to other services go to the
sidecar's outbound listener with ``Host: <service>``; the mesh decides which instance answers.
The caller's ``end-user`` and tracing headers are passed on, so header rules apply on every hop.
A failed call is shown in the page (``"error"``), not turned into a failed page, as Bookinfo does.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from discovery.runtime.addresses import split_host_port
from discovery.runtime.http import add_ops_routes, start_site
from discovery.runtime.lifecycle import run_until_signalled
from discovery.runtime.logs import configure_logging

SERVICES = ("productpage", "details", "reviews", "ratings")
# Istio's list of headers an app must pass on for tracing, plus the user that header rules match on.
PROPAGATED = (
    "end-user",
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
)
TITLE = "The Comedy of Errors"
BOOK: dict[str, Any] = {"id": 0, "title": TITLE, "author": "William Shakespeare"}
REVIEWS = (
    ("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
    ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays."),
)
RATINGS = {"Reviewer1": 5, "Reviewer2": 4}
STAR_COLOR = {"v2": "black", "v3": "red"}


@dataclass(frozen=True)
class AppConfig:
    service: str
    version: str
    port: int
    outbound: str  # HOST:PORT of this workload's sidecar outbound listener
    call_timeout: float = 3.0

    @property
    def name(self) -> str:
        return f"{self.service}-{self.version}"


def forwarded_headers(incoming: Mapping[str, str], user: str = "") -> dict[str, str]:
    """The headers an outgoing call carries: the propagated ones, ``end-user`` from ``user`` if given."""
    headers = {name: incoming[name] for name in PROPAGATED if name in incoming}
    if user:
        headers["end-user"] = user
    return headers


def review_entries(version: str, ratings: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The reviews a version shows: v1 without ratings, v2/v3 with stars (or the ratings error)."""
    entries: list[dict[str, Any]] = []
    for reviewer, text in REVIEWS:
        entry: dict[str, Any] = {"reviewer": reviewer, "text": text}
        if version in STAR_COLOR:
            if "error" in ratings:
                entry["rating"] = {"error": ratings["error"]}
            else:
                stars = ratings.get("ratings", {}).get(reviewer, 0)
                entry["rating"] = {"stars": stars, "color": STAR_COLOR[version]}
        entries.append(entry)
    return entries


def render_page(page: Mapping[str, Any]) -> str:
    """productpage's HTML: the book, who served each part, the reviews with their stars."""
    details, reviews = page["details"], page["reviews"]
    lines = [
        "<!doctype html>",
        f"<title>{html.escape(TITLE)}</title>",
        f"<h1>{html.escape(TITLE)}</h1>",
        f"<p>productpage served by {html.escape(page['served_by'])}"
        + (f" for user {html.escape(page['user'])}" if page["user"] else "")
        + "</p>",
    ]
    if "error" in details:
        lines.append(f"<p>details: error: {html.escape(str(details['error']))}</p>")
    else:
        lines.append(
            f"<p>details served by {html.escape(details['served_by'])}: {html.escape(details['author'])}, "
            f"{details['year']}, {details['pages']} pages</p>"
        )
    if "error" in reviews:
        lines.append(f"<p>reviews: error: {html.escape(str(reviews['error']))}</p>")
    else:
        lines.append(f"<p>reviews served by {html.escape(reviews['served_by'])}</p><ul>")
        for entry in reviews["reviews"]:
            rating = entry.get("rating")
            if rating is None:
                stars = ""
            elif "error" in rating:
                stars = f" (ratings: {html.escape(str(rating['error']))})"
            else:
                stars = f" <span style='color:{rating['color']}'>{'★' * rating['stars']}</span>"
            lines.append(f"<li>{html.escape(entry['reviewer'])}: {html.escape(entry['text'])}{stars}</li>")
        lines.append("</ul>")
    return "\n".join(lines) + "\n"


class Workload:
    """The HTTP app; ``session`` calls other services through the sidecar."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        add_ops_routes(app, lambda: True)
        routes = {
            "productpage": (("/", self.productpage), ("/productpage", self.productpage)),
            "details": (("/details/{id}", self.details),),
            "reviews": (("/reviews/{id}", self.reviews),),
            "ratings": (("/ratings/{id}", self.ratings),),
        }[self.config.service]
        for path, handler in routes:
            app.router.add_get(path, handler)
        return app

    def answer(self, body: dict[str, Any]) -> web.Response:
        return web.json_response(body, headers={"x-served-by": self.config.name})

    async def call(self, service: str, path: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """GET ``path`` of ``service`` through the sidecar; ``{"error": ...}`` when it fails."""
        assert self.session is not None
        url = f"http://{self.config.outbound}{path}"
        try:
            async with self.session.get(url, headers={"Host": service, **headers}) as r:
                text = await r.text()
                if r.status != 200:
                    return {"error": f"{service} answered {r.status}: {text.strip()[:200]}", "status": r.status}
                body: dict[str, Any] = json.loads(text)
                return body
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return {"error": f"{service} unavailable: {type(exc).__name__} {exc}".strip(), "status": 503}

    async def productpage(self, request: web.Request) -> web.Response:
        user = request.headers.get("end-user", "") or request.query.get("user", "")
        headers = forwarded_headers(request.headers, user)
        details, reviews = await asyncio.gather(
            self.call("details", "/details/0", headers), self.call("reviews", "/reviews/0", headers)
        )
        page = {"served_by": self.config.name, "user": user, "book": BOOK, "details": details, "reviews": reviews}
        wants_json = request.query.get("format") == "json" or "application/json" in request.headers.get("Accept", "")
        if wants_json:
            return self.answer(page)
        return web.Response(text=render_page(page), content_type="text/html", headers={"x-served-by": self.config.name})

    async def details(self, request: web.Request) -> web.Response:
        details = {"year": 1595, "type": "paperback", "pages": 200, "publisher": "PublisherA", "language": "English"}
        return self.answer({**BOOK, **details, "id": _book_id(request), "served_by": self.config.name})

    async def reviews(self, request: web.Request) -> web.Response:
        book = _book_id(request)
        ratings: dict[str, Any] = {}
        if self.config.version in STAR_COLOR:
            ratings = await self.call("ratings", f"/ratings/{book}", forwarded_headers(request.headers))
        body = {"id": book, "served_by": self.config.name, "reviews": review_entries(self.config.version, ratings)}
        return self.answer(body)

    async def ratings(self, request: web.Request) -> web.Response:
        return self.answer({"id": _book_id(request), "served_by": self.config.name, "ratings": RATINGS})

    async def serve(self, stop: asyncio.Event) -> None:
        timeout = aiohttp.ClientTimeout(total=self.config.call_timeout)
        # no pooling limits and no proxy environment: the sidecar is the proxy
        async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
            self.session = session
            runner, _ = await start_site(self.app(), "127.0.0.1", self.config.port)
            try:
                await stop.wait()
            finally:
                await runner.cleanup()


def _book_id(request: web.Request) -> int:
    text = request.match_info.get("id", "0")
    if not text.isdigit():
        raise web.HTTPBadRequest(text=json.dumps({"error": f"book id must be a number, got {text!r}"}))
    return int(text)


def parse_args(argv: list[str] | None = None) -> AppConfig:
    parser = argparse.ArgumentParser(prog="python -m mesh.demo.app", description=__doc__.splitlines()[0])
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--version", required=True, help="v1, v2, ...: shown in every answer")
    parser.add_argument("--port", required=True, type=int, help="port on 127.0.0.1 the app listens on")
    parser.add_argument("--outbound", default="127.0.0.1:15001", help="HOST:PORT of the sidecar's outbound listener")
    parser.add_argument("--call-timeout", type=float, default=3.0, help="seconds a call to another service may take")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    try:
        split_host_port(args.outbound, name="--outbound")
    except ValueError as exc:
        parser.error(str(exc))
    if not 0 < args.port < 65536:
        parser.error(f"--port: must be 1-65535, got {args.port}")
    configure_logging(args.log_level)
    return AppConfig(args.service, args.version, args.port, args.outbound, args.call_timeout)


def main(argv: list[str] | None = None) -> None:
    workload = Workload(parse_args(argv))
    run_until_signalled(workload.serve)


if __name__ == "__main__":
    main()
