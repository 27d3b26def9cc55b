"""The composition point: per-cluster and per-route resilience objects, and the per-request plan.

``Resilience`` lives as long as the sidecar. On every snapshot swap ``Resilience.build(snapshot)``
returns a ``ResilienceConfig``: a ``RouteResilience`` per route (by ``id(route)``, like
``sidecar.active``'s route runtimes) and the ``ClusterResilience`` of every cluster. Cluster
objects are *carried over by name* (breaker counts, outlier history, health-check states keyed
by endpoint key), the way ``lb.LoadTracker`` is; only their settings and endpoint sets change.

How the proxy's exchange uses it (callback style, no awaits on the hot path)::

    res = active.resilience                       # ResilienceConfig of the request's snapshot
    route_res = res.routes[id(route)]
    fault = route_res.fault(rng)                  # 1. fault: delay first (call_later), then abort
    if fault.delay_s: wait fault.delay_s, then go on (client may leave meanwhile)
    if fault.abort_status: answer abort_status with fault.ABORT_MESSAGE; stop
    if route.redirect: answer route_res.redirect(scheme, host, path, query); stop   # (status, Location)
    cluster_res = res.clusters[cluster_name]      # after the weighted-cluster pick
    plan = route_res.begin(cluster_res, method, now)
    if isinstance(plan, Overflow): answer plan.status, plan.headers, plan.body; stop
    mirrors = route_res.mirror_targets(rng)       # shadow clusters (limiter slots already taken)
    loop:
        attempt = plan.next_attempt(now)          # exclude: endpoint keys already tried
        endpoint = balancer.pick(PickContext(hash_key, exclude=attempt.exclude))
        plan.attempt_started(endpoint.key, now)
        ... acquire a connection: if none is idle and the pool must queue the request,
            cluster_res.breaker.try_acquire_pending() (False: answer plan.overflow(MAX_PENDING));
            release_pending() when it gets one or gives up; opening a connection takes
            breaker.try_acquire_connection() (False: wait as pending), closing releases it ...
        send head (+ plan.replay_body() on a retry), then stream the rest of the body:
            every body piece sent upstream also goes to plan.keep_body(piece) (replay copy)
        when the request has been fully received: plan.request_complete(now)
        arm the timer at plan.deadline()          # re-read after attempt_started / request_complete
        on the response head (before sending anything to the client), or a local failure:
            verdict = plan.on_attempt_result(AttemptResult(status=..., failure=..., grpc_status=...,
                                                           overloaded=...), now, rng)
            verdict.retry: drop this upstream connection, wait verdict.delay_s (call_later),
                           go to loop; else deliver this response / failure (result.local_status)
        on the timer: kind = plan.timeout_kind(now)
            "route": plan.on_route_timeout(); answer 504 (timeouts.TIMEOUT_MESSAGE); no retry
            "per_try": handle as on_attempt_result(AttemptResult(failure=PER_TRY_TIMEOUT))
    finally (exactly once, however it ended): plan.finish()
    mirrors: when the request body is complete and <= MIRROR_BODY_LIMIT, for each target
        resilience.send_mirror(target, endpoint_or_None, method, target_path, host, headers, body);
        if the body overflows or the client leaves: resilience.drop_mirror(target)

Ejections and health changes call ``on_cluster_change(cluster_name)``: the proxy rebuilds that
cluster's balancer from ``cluster_res.effective_endpoints(cluster.endpoints)`` (the unavailable
ones marked unhealthy; ``lb`` applies the panic threshold) and swaps the balancer reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any, NamedTuple

from lb import Endpoint
from mesh.model.snapshot import Cluster, Route, Snapshot
from sidecar.resilience.circuit_breaker import MAX_REQUESTS, CircuitBreaker, overflow_response, worker_share
from sidecar.resilience.fault import NO_FAULT, FaultDecision, decide_fault
from sidecar.resilience.health_check import HealthChecker
from sidecar.resilience.health_runner import HealthCheckRunner
from sidecar.resilience.metrics import FaultStats, ResilienceMetrics, RetryStats
from sidecar.resilience.mirror import MirrorLimiter, mirror_targets, shadow_request_bytes
from sidecar.resilience.mirror_sender import MirrorSender
from sidecar.resilience.outlier import OutlierDetector
from sidecar.resilience.retry import (
    PER_TRY_TIMEOUT,
    AttemptResult,
    ReplayBuffer,
    backoff_delay,
    condition_matches,
    method_allows,
)
from sidecar.resilience.rewrite import redirect_location
from sidecar.resilience.timeouts import NO_DEADLINE, attempt_deadline, retry_fits, route_deadline

log = logging.getLogger("sidecar.resilience")

MIN_TICK_S = 0.01
MAX_TICK_S = 1.0


# === clusters ===


class ClusterResilience:
    """One cluster's breaker, outlier detector and health checker (the last two only when configured).

    ``workers``: how many ``--workers`` processes share the cluster's limits (the breaker enforces
    this process's ``worker_share``)."""

    __slots__ = ("breaker", "cluster", "health", "name", "notify", "outlier", "retry_stats", "workers")

    def __init__(
        self,
        cluster: Cluster,
        retry_stats: RetryStats,
        *,
        clock: Callable[[], float],
        rng: random.Random,
        notify: Callable[[str], None] | None = None,
        workers: int = 1,
    ) -> None:
        self.name = cluster.name
        self.cluster = cluster
        self.retry_stats = retry_stats
        self.notify = notify  # called with the name when ``unavailable`` changes
        self.workers = workers
        self.breaker = CircuitBreaker(cluster.name, worker_share(cluster.circuit_breakers, workers))
        self.outlier: OutlierDetector | None = None
        self.health: HealthChecker | None = None
        self._configure(cluster, clock, rng)

    def update(self, cluster: Cluster, clock: Callable[[], float], rng: random.Random) -> bool:
        """Settings and endpoints of a new snapshot; returns whether the unavailable set changed."""
        before = self.unavailable
        self.cluster = cluster
        self.breaker.limits = worker_share(cluster.circuit_breakers, self.workers)
        self._configure(cluster, clock, rng)
        return self.unavailable != before

    def _configure(self, cluster: Cluster, clock: Callable[[], float], rng: random.Random) -> None:
        keys = [e.key for e in cluster.endpoints]
        if cluster.outlier_detection is None:
            self.outlier = None
        elif self.outlier is None:
            self.outlier = OutlierDetector(cluster.outlier_detection, keys, clock=clock, rng=rng)
        else:
            self.outlier.update_config(cluster.outlier_detection)
            self.outlier.set_endpoints(keys)
        if cluster.health_check is None:
            self.health = None
        elif self.health is None:
            self.health = HealthChecker(cluster.health_check, keys, clock=clock)
        else:
            self.health.update_config(cluster.health_check)
            self.health.set_endpoints(keys)

    @property
    def unavailable(self) -> frozenset[str]:
        """Endpoint keys that get no traffic: ejected, or not passing active health checks."""
        outlier, health = self.outlier, self.health
        if outlier is None:
            return health.unavailable if health is not None else frozenset()
        if health is None:
            return outlier.ejected
        return outlier.ejected | health.unavailable

    def effective_endpoints(self, endpoints: Sequence[Endpoint] | None = None) -> tuple[Endpoint, ...]:
        """The endpoints for the balancer: unavailable ones marked unhealthy (registry health kept)."""
        source = self.cluster.endpoints if endpoints is None else endpoints
        unavailable = self.unavailable
        if not unavailable:
            return tuple(source)
        return tuple(replace(e, healthy=False) if e.healthy and e.key in unavailable else e for e in source)

    def admin_view(self) -> dict[str, Any]:
        """Plain data for admin ``/clusters``: breaker counts, and per endpoint its outlier and check state."""
        endpoints: dict[str, Any] = {}
        for endpoint in self.cluster.endpoints:
            key = endpoint.key
            endpoints[key] = {
                "available": key not in self.unavailable,
                "outlier": self.outlier.endpoint_state(key) if self.outlier is not None else None,
                "health_check": self.health.endpoint_state(key) if self.health is not None else None,
            }
        return {"circuit_breakers": self.breaker.state(), "endpoints": endpoints}


# === routes and requests ===


class Overflow(NamedTuple):
    """A fast local answer from a circuit breaker."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: str


class Attempt(NamedTuple):
    """One upstream try: ``number`` 0 is the first; ``exclude`` the endpoint keys to avoid."""

    number: int
    exclude: frozenset[str]


class Verdict(NamedTuple):
    """After an attempt: ``retry`` after ``delay_s``, or deliver this outcome (``reason`` says why not)."""

    retry: bool
    delay_s: float = 0.0
    reason: str = ""


DELIVER = Verdict(False)
_NOTHING: frozenset[str] = frozenset()
FIRST_ATTEMPT = Attempt(0, _NOTHING)


class RouteResilience:
    """A route's policies, ready per request (built once per snapshot)."""

    __slots__ = ("fault_policy", "fault_stats", "owner", "route")

    def __init__(self, route: Route, owner: Resilience, fault_stats: FaultStats) -> None:
        self.route = route
        self.owner = owner
        self.fault_stats = fault_stats
        self.fault_policy = route.fault

    def fault(self, rng: random.Random) -> FaultDecision:
        """Whether to delay and/or abort this request (``NO_FAULT`` for most; counted)."""
        if self.fault_policy is None:
            return NO_FAULT
        decision = decide_fault(self.fault_policy, rng)
        if decision.delay_s:
            self.fault_stats.delays += 1
        if decision.abort_status:
            self.fault_stats.aborts += 1
        return decision

    def redirect(self, *, scheme: str, authority: str, path: str, query: str) -> tuple[int, str]:
        """(status, Location) of a redirect route's answer."""
        redirect = self.route.redirect
        assert redirect is not None, "not a redirect route"
        location = redirect_location(
            redirect, self.route.match, scheme=scheme, authority=authority, path=path, query=query
        )
        return redirect.response_code, location

    def mirror_targets(self, rng: random.Random) -> tuple[str, ...]:
        """Shadow clusters for this request, each with a limiter slot taken (release via send/drop_mirror)."""
        targets = mirror_targets(self.route.mirrors, rng)
        if not targets:
            return ()
        limiter = self.owner.mirror_limiter
        return tuple(t for t in targets if limiter.try_acquire(t))

    def begin(self, cluster: ClusterResilience, method: str, now: float) -> RequestPlan | Overflow:
        """The plan for a request to ``cluster``, or the breaker's fast 503."""
        breaker = cluster.breaker
        if breaker.requests < breaker.limits.max_requests:
            breaker.requests += 1  # try_acquire_request, inlined: this runs per request
        else:
            breaker.try_acquire_request()  # counts the overflow
            status, headers, body = overflow_response(breaker, MAX_REQUESTS)
            return Overflow(status, headers, body)
        return RequestPlan(self.route, cluster, method, now)


class RequestPlan:
    """Per-request resilience state across attempts. Not shared; ``finish`` exactly once."""

    __slots__ = (
        "attempt_started_at",
        "cluster",
        "complete_at",
        "current_key",
        "finished",
        "holds_retry",
        "method",
        "policy",
        "replay",
        "retries",
        "route_deadline",
        "timeout_s",
        "tried",
    )

    def __init__(self, route: Route, cluster: ClusterResilience, method: str, now: float) -> None:
        self.cluster = cluster
        self.policy = route.retry_policy
        self.method = method
        self.timeout_s = route.timeout_s
        self.retries = 0
        self.tried: list[str] = []
        self.current_key = ""
        self.attempt_started_at = now
        self.complete_at = -1.0  # not yet
        self.route_deadline = NO_DEADLINE
        self.holds_retry = False
        self.finished = False
        self.replay: ReplayBuffer | None = None  # made at the first body piece, when retries are possible

    # --- attempts ---

    def next_attempt(self, now: float) -> Attempt:
        tried = self.tried
        if not tried:
            return FIRST_ATTEMPT
        policy = self.policy
        exclude = frozenset(tried) if policy is not None and policy.retry_previous_hosts else _NOTHING
        return Attempt(len(tried), exclude)

    def attempt_started(self, key: str, now: float) -> None:
        self.current_key = key
        self.tried.append(key)
        self.attempt_started_at = now

    def request_complete(self, now: float) -> None:
        """The whole request has been received from the client: the route timeout starts (Envoy)."""
        if self.complete_at < 0:
            self.complete_at = now
            self.route_deadline = route_deadline(now, self.timeout_s)

    def deadline(self) -> float:
        """When the current attempt times out (``NO_DEADLINE`` until the request is complete)."""
        complete_at = self.complete_at
        if complete_at < 0:
            return NO_DEADLINE
        policy = self.policy
        if policy is None or not policy.per_try_timeout_s:
            return self.route_deadline
        start = self.attempt_started_at if self.attempt_started_at > complete_at else complete_at
        return attempt_deadline(start, self.route_deadline, policy.per_try_timeout_s)

    def timeout_kind(self, now: float) -> str:
        """Which deadline passed: ``route`` (answer 504, no retry) or ``per_try``."""
        return "route" if now >= self.route_deadline else "per_try"

    def on_route_timeout(self) -> None:
        self.cluster.retry_stats.timeouts_route += 1
        if self.current_key:
            self._record(AttemptResult(failure=PER_TRY_TIMEOUT))

    def overflow(self, limit: str) -> Overflow:
        """The fast 503 for a breaker ``limit`` reached mid-request (``MAX_PENDING`` at the pool)."""
        status, headers, body = overflow_response(self.cluster.breaker, limit)
        return Overflow(status, headers, body)

    # --- body replay ---

    def keep_body(self, data: bytes) -> None:
        """A piece of the request body went upstream: keep a copy for a retry (up to the limit)."""
        replay = self.replay
        if replay is None:
            policy = self.policy
            if policy is None or not policy.num_retries:
                return  # never retried: nothing to keep
            replay = self.replay = ReplayBuffer(policy.buffer_limit_bytes)
        if replay.replayable:
            replay.add(data)

    def replay_body(self) -> bytes:
        """The body received so far, to send to a retry's endpoint before streaming the rest."""
        return self.replay.body() if self.replay is not None else b""

    # --- results ---

    def on_attempt_result(self, result: AttemptResult, now: float, rng: random.Random) -> Verdict:
        """Account the attempt (outlier detection, retry slot) and decide whether to retry."""
        stats = self.cluster.retry_stats
        if result.failure == PER_TRY_TIMEOUT:
            stats.timeouts_per_try += 1
        if self.current_key:
            self._record(result)
        retried = self.holds_retry
        if retried:
            self._release_retry()
        policy = self.policy
        if policy is None or not condition_matches(policy, result):
            if retried:
                stats.success += 1
            return DELIVER
        if self.retries >= policy.num_retries:
            stats.limit_exceeded += 1
            return Verdict(False, 0.0, "limit_exceeded")
        if not method_allows(policy, self.method, result):
            return Verdict(False, 0.0, "method")
        if self.replay is not None and not self.replay.replayable:
            return Verdict(False, 0.0, "body")
        delay = backoff_delay(policy, self.retries + 1, rng)
        if not retry_fits(now, delay, self.route_deadline):
            return Verdict(False, 0.0, "deadline")
        if not self.cluster.breaker.try_acquire_retry():
            stats.overflows += 1
            return Verdict(False, 0.0, "overflow")
        self.holds_retry = True
        self.retries += 1
        stats.retries += 1
        return Verdict(True, delay)

    def _record(self, result: AttemptResult) -> None:
        key = self.current_key
        self.current_key = ""
        cluster = self.cluster
        outlier = cluster.outlier
        if outlier is not None and outlier.on_result(key, result) and cluster.notify is not None:
            cluster.notify(cluster.name)

    def _release_retry(self) -> None:
        if self.holds_retry:
            self.holds_retry = False
            self.cluster.breaker.release_retry()

    def finish(self) -> None:
        """The exchange is over (answered, failed or abandoned): give back breaker slots."""
        if self.finished:
            return
        self.finished = True
        if self.holds_retry:
            self._release_retry()
        breaker = self.cluster.breaker
        if breaker.requests > 0:
            breaker.requests -= 1  # release_request, inlined


# === the sidecar-wide owner ===


class ResilienceConfig:
    """What one snapshot's requests read: route policies by ``id(route)`` and clusters by name.

    ``updates`` are the new settings of clusters carried over from the previous snapshot; they
    are applied by ``Resilience.activate`` at the swap, so a rejected snapshot changes nothing.
    """

    __slots__ = ("clusters", "routes", "updates")

    def __init__(
        self,
        routes: Mapping[int, RouteResilience],
        clusters: Mapping[str, ClusterResilience],
        updates: Sequence[tuple[ClusterResilience, Cluster]] = (),
    ) -> None:
        self.routes = routes
        self.clusters = clusters
        self.updates = updates


class Resilience:
    """The long-lived resilience state of one sidecar, and its background work (outlier ticks,
    health probes, mirror copies). ``on_cluster_change(name)`` is called when a cluster's set of
    unavailable endpoints changes; the sidecar rebuilds that cluster's balancer.

    Under ``--workers N`` (``share_with_workers``): breaker limits are this process's share, and
    only the probing worker runs health checks; the others ``adopt_health`` what it publishes
    (``health_states``, pushed on every change: ``on_health_change`` listeners, and fetched by a
    worker that has endpoints it knows nothing of yet: ``on_health_needed``). Outlier detection
    judges the answers each worker sees; an ejection it decides is given to ``on_ejection``
    listeners (cluster, key, seconds left, reason, ejection count) for the other workers to
    ``adopt_ejection``."""

    def __init__(
        self,
        metrics: ResilienceMetrics,
        on_cluster_change: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.metrics = metrics
        self.on_cluster_change = on_cluster_change
        self.clock = clock
        self.rng = rng or random.Random()
        self.clusters: dict[str, ClusterResilience] = {}
        self.mirror_limiter = MirrorLimiter()
        self.mirror_sender = MirrorSender(self.mirror_limiter)
        self.health_runner = HealthCheckRunner(self._health_changed, rng=self.rng)
        self.workers = 1
        self.probes_health = True  # False: another worker probes, this one adopts its results
        self.on_health_change: list[Callable[[], None]] = []  # probing worker: publish now
        self.on_health_needed: list[Callable[[], None]] = []  # other workers: fetch the prober's states now
        self.on_ejection: list[Callable[[str, str, float, str, int], None]] = []  # an ejection decided here
        self._ejected_seen: dict[str, frozenset[str]] = {}  # per cluster: ejections already told / adopted
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        metrics.attach(lambda: self.clusters, self.mirror_limiter)

    def build(self, snapshot: Snapshot) -> ResilienceConfig:
        """Per-snapshot objects; cluster state is carried over by name. Call before the swap."""
        clusters: dict[str, ClusterResilience] = {}
        updates: list[tuple[ClusterResilience, Cluster]] = []
        for name, cluster in snapshot.clusters.items():
            existing = self.clusters.get(name)
            if existing is None:
                existing = ClusterResilience(
                    cluster,
                    self.metrics.retry_stats(name),
                    clock=self.clock,
                    rng=self.rng,
                    notify=self._changed,
                    workers=self.workers,
                )
            elif existing.cluster != cluster:
                updates.append((existing, cluster))
            clusters[name] = existing
        routes: dict[int, RouteResilience] = {}
        for table in snapshot.route_tables.values():
            for vhost in table.virtual_hosts:
                for route in vhost.routes:
                    routes[id(route)] = RouteResilience(route, self, self.metrics.fault_stats(route.name))
        return ResilienceConfig(MappingProxyType(routes), MappingProxyType(clusters), tuple(updates))

    def activate(self, config: ResilienceConfig) -> None:
        """Call right after the swap to the snapshot ``config`` was built from: apply carried-over
        clusters' new settings (``on_cluster_change`` for those whose unavailable set changed),
        forget dropped clusters, and point the health checks at the new endpoints (needs the loop)."""
        changed = [
            cluster.name for cluster, settings in config.updates if cluster.update(settings, self.clock, self.rng)
        ]
        for name in [n for n in self.clusters if n not in config.clusters]:
            self.clusters.pop(name).notify = None
            self._ejected_seen.pop(name, None)
        self.clusters.update(config.clusters)
        if self.probes_health:
            for name, cluster in config.clusters.items():
                self.health_runner.sync(name, cluster.health, cluster.cluster.endpoints)
            self.health_runner.forget_others(set(config.clusters))
        elif any(c.health is not None and c.health.has_unchecked() for c in config.clusters.values()):
            for listener in self.on_health_needed:  # endpoints this worker knows nothing of yet
                listener()
        for name in changed:
            self._changed(name)
        self._wake.set()

    def effective_endpoints(self, name: str, endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
        """``endpoints`` of cluster ``name`` as the balancer should see them."""
        cluster = self.clusters.get(name)
        return tuple(endpoints) if cluster is None else cluster.effective_endpoints(endpoints)

    # --- several worker processes ---

    def share_with_workers(self, workers: int, *, probes_health: bool) -> None:
        """This process is one of ``workers`` serving the same listeners: enforce its share of each
        breaker limit, and probe health only if ``probes_health`` (else adopt what is published)."""
        self.workers = max(1, workers)
        self.probes_health = probes_health
        for cluster in self.clusters.values():
            cluster.workers = self.workers
            cluster.breaker.limits = worker_share(cluster.cluster.circuit_breakers, self.workers)

    def health_states(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every checked cluster's endpoint states (``HealthChecker.endpoint_state``), to publish."""
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, cluster in self.clusters.items():
            checker = cluster.health
            if checker is not None:
                out[name] = {key: checker.endpoint_state(key) for key in checker.endpoints}
        return out

    def adopt_health(self, states: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Take the probing worker's ``health_states``; clusters or endpoints this process does not
        (yet) check are skipped. Raises ``ValueError`` naming the entry at fault."""
        for name, endpoints in states.items():
            cluster = self.clusters.get(name)
            checker = cluster.health if cluster is not None else None
            if checker is None:
                continue
            changed = False
            try:
                for key, view in endpoints.items():
                    try:
                        changed = checker.adopt(key, view) or changed
                    except (KeyError, TypeError, ValueError) as exc:
                        raise ValueError(f"{name}.{key}: {exc}") from exc
            finally:
                if changed:  # what was taken before a bad entry still reaches the balancer
                    self._changed(name)

    def adopt_ejection(self, name: str, key: str, duration_s: float, reason: str, ejections: int) -> bool:
        """Another worker ejected ``key`` of cluster ``name``: eject it here too (if this worker
        detects outliers in that cluster). Returns whether it was ejected here now."""
        cluster = self.clusters.get(name)
        outlier = cluster.outlier if cluster is not None else None
        if outlier is None or not outlier.adopt_ejection(key, duration_s, reason, ejections):
            return False
        self._ejected_seen[name] = outlier.ejected  # adopted, so not told back
        self._changed(name)
        return True

    def _tell_ejections(self, name: str) -> None:
        """Ejections of ``name`` decided here since the last call go to the ``on_ejection`` listeners."""
        cluster = self.clusters.get(name)
        outlier = cluster.outlier if cluster is not None else None
        if outlier is None:
            return
        ejected = outlier.ejected
        for key in sorted(ejected - self._ejected_seen.get(name, frozenset())):
            state = outlier.ejection(key)
            if state is not None:
                for listener in self.on_ejection:
                    listener(name, key, *state)
        self._ejected_seen[name] = ejected

    def _health_changed(self, name: str) -> None:
        self._changed(name)
        for listener in self.on_health_change:
            listener()

    def _changed(self, name: str) -> None:
        if self.on_ejection:
            self._tell_ejections(name)
        self._wake.set()  # an ejection may end sooner than the ticker's current sleep
        try:
            self.on_cluster_change(name)
        except Exception:
            log.exception("cluster change callback failed", extra={"cluster": name})

    # --- mirrors ---

    def send_mirror(
        self,
        cluster: str,
        endpoint: Endpoint | None,
        method: str,
        target: str,
        host: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Fire one copy (its limiter slot was taken by ``RouteResilience.mirror_targets``)."""
        if endpoint is None:
            self.drop_mirror(cluster)
            return
        request = shadow_request_bytes(method, target, host, headers, body)
        self.mirror_sender.send(cluster, endpoint.host, endpoint.port, request)

    def drop_mirror(self, cluster: str) -> None:
        """Give up a copy whose slot was taken (body too long, client gone, no endpoint)."""
        limiter = self.mirror_limiter
        limiter.in_flight[cluster] = max(0, limiter.in_flight.get(cluster, 0) - 1)
        limiter.drop(cluster)

    # --- background ---

    def start(self) -> None:
        """Start the outlier ticker (health checks start with ``activate``)."""
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="outlier-ticker")

    async def _tick_loop(self) -> None:
        while True:
            now = self.clock()
            wake_at = now + MAX_TICK_S
            for name, cluster in list(self.clusters.items()):
                outlier = cluster.outlier
                if outlier is None:
                    continue
                if now >= outlier.next_tick_at() and outlier.tick():
                    self._changed(name)
                wake_at = min(wake_at, outlier.next_tick_at())
            self._wake.clear()
            delay = min(MAX_TICK_S, max(MIN_TICK_S, wake_at - self.clock()))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def close(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        await self.health_runner.close()
        await self.mirror_sender.close()

    def admin_view(self) -> dict[str, Any]:
        """Every cluster's resilience state (merge into admin ``/clusters`` by cluster name)."""
        return {name: cluster.admin_view() for name, cluster in sorted(self.clusters.items())}


__all__ = [
    "DELIVER",
    "Attempt",
    "ClusterResilience",
    "Overflow",
    "RequestPlan",
    "Resilience",
    "ResilienceConfig",
    "RouteResilience",
    "Verdict",
]
