"""One request's trip through the proxy: dispatch, upstream connection, both bodies streamed.

An ``Exchange`` is created when a request head is parsed and started when it reaches the front
of its connection's queue (pipelined requests wait their turn, so responses leave in request
order). It reads the active config once, at start, and keeps it.

Rules:
- Bodies are streamed, never collected: request bytes go to the upstream as they arrive (kept
  in a small buffer only until the upstream connection is ready; reading from the client pauses
  when that buffer passes the high-water mark), response bytes go to the client as they arrive.
  Backpressure both ways: a full write buffer on one side pauses reading on the other.
- Errors map to statuses here: connect failure or reset before the response head → 502, route
  timeout → 504, an invalid upstream response → 502; no endpoint → 503 (``dispatch``). After the
  response head has gone out, a failure can only cut the client connection.
- A request on a reused connection that fails before any response byte (the upstream closed it
  while idle) and has no body is retried once on a fresh connection, as HTTP clients do (the
  endpoint is not blamed for it).
- Resilience (``sidecar.resilience.policy``'s call contract): the route's fault first (a delay
  by ``call_later``, an abort as a local answer), a redirect route's answer, the cluster breaker's
  ``max_requests`` (an ``Overflow`` 503 with ``x-mesh-overflow``), then attempts: each attempt's
  outcome goes to ``RequestPlan.on_attempt_result`` (outlier detection and the retry decision)
  before any response byte reaches the client; a retry drops the upstream connection, waits its
  backoff, picks another endpoint and replays the head and the buffered body. A per-try timeout
  arms its own timer (the listener sweep is too coarse for it); routes without one pay nothing.
  Mirrors get their copy once the request body is complete (fire-and-forget).
- The upstream connection goes back to the pool only if both messages ended cleanly and the
  upstream allows keep-alive; the client connection stays open only if the request was read to
  its end and both sides allow keep-alive.
- ``LoadTracker.start``/``finish`` bracket the upstream request; metrics are recorded once, at
  the end, with the final status (499 when the client went away first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from lb import NO_HINTS, Endpoint, PickContext
from sidecar.active import ActiveConfig, ClusterRuntime, RouteRuntime
from sidecar.http1.dispatch import Forward, Redirect, Reject, decide, pass_through
from sidecar.http1.framing import Body, HttpError, RequestHead, ResponseHead, UpstreamProtocolError, response_head
from sidecar.http1.upstream import UpstreamConnection
from sidecar.http1.upstream_pool import release_pending_slot
from sidecar.http1.wire import (
    TraceParents,
    chunk,
    error_response,
    interim_bytes,
    last_chunk,
    request_head_bytes,
    response_head_bytes,
)
from sidecar.metrics import RequestStats
from sidecar.resilience.circuit_breaker import MAX_PENDING, CircuitBreaker
from sidecar.resilience.fault import ABORT_MESSAGE
from sidecar.resilience.mirror import MIRROR_BODY_LIMIT
from sidecar.resilience.policy import Overflow, RequestPlan
from sidecar.resilience.retry import CONNECT_FAILURE, PER_TRY_TIMEOUT, RESET, AttemptResult
from sidecar.resilience.timeouts import NO_DEADLINE, TIMEOUT_MESSAGE
from sidecar.tcp.relay import Relay

if TYPE_CHECKING:
    from sidecar.http1.downstream import DownstreamConnection

log = logging.getLogger("sidecar.http1")

BODY_BUFFER_HIGH = 256 * 1024
CLIENT_CLOSED = 499  # nginx's code for "client closed request", used in metrics only

_monotonic = time.monotonic


class Exchange:
    __slots__ = (
        "active",
        "body_done",
        "cluster",
        "conn",
        "deadline",
        "done",
        "endpoint",
        "flags",
        "head",
        "mirror_body",
        "mirror_size",
        "mirrors",
        "out",
        "pending",
        "pending_on",
        "pending_size",
        "plan",
        "response",
        "response_started",
        "retried",
        "reused",
        "route",
        "set_cookie",
        "started",
        "stats",
        "status",
        "target",
        "timer",
        "trailers",
        "up_read_paused",
        "upstream",
        "wants_upstream",
    )

    def __init__(self, conn: DownstreamConnection, head: RequestHead) -> None:
        self.conn = conn
        self.head = head
        self.body_done = head.body == Body.NONE
        self.pending: list[bytes] | None = None
        self.pending_size = 0
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.active: ActiveConfig | None = None
        self.route: RouteRuntime | None = None
        self.cluster: ClusterRuntime | None = None
        self.endpoint: Endpoint | None = None
        self.stats: RequestStats | None = None
        self.target = head.target
        self.set_cookie: bytes | None = None
        self.upstream: UpstreamConnection | None = None
        self.response: ResponseHead | None = None
        self.response_started = False  # any response byte (head) sent to the client
        self.out: list[bytes] = []  # response bytes for the client, written once per upstream read
        self.status = 0
        self.flags = ""  # Envoy response flags (``UH``, ``UO,URX`` ...), set only where a request fails
        self.started = 0.0
        self.deadline = 0.0
        self.retried = False
        self.reused = False
        self.up_read_paused = False
        self.wants_upstream = False
        self.done = False
        self.plan: RequestPlan | None = None
        self.pending_on: CircuitBreaker | None = None  # a breaker's pending slot while queued at the pool
        self.timer: asyncio.TimerHandle | None = None  # a fault delay, a retry backoff or a per-try timeout
        self.mirrors: tuple[str, ...] = ()
        self.mirror_body: list[bytes] | None = None
        self.mirror_size = 0

    # === start ===

    def begin(self) -> None:
        """Dispatch under the config active now; connect or answer locally."""
        conn = self.conn
        self.started = _monotonic()
        active = self.active = conn.context.config.current
        runtime = active.listeners.get(conn.context.name)
        if runtime is None:
            self.flags = "NR"
            self.respond_local(503, "listener is not in the active config", None)
            return
        if runtime.annotate:
            if active.access_log is not None and active.access_log.tracer is not None:  # OTel spans (sidecar.tracing)
                active.access_log.tracer.begin(self)
            self._annotate(runtime.start_traces, active.access_log is not None)
        choice = decide(runtime, self.head, conn.client_ip, conn.context.rng)
        if isinstance(choice, Reject):
            if choice.unknown_host and conn.context.demand is not None:
                conn.context.spawn(self._demand_then_retry(choice))
                return
            if not (choice.unknown_host and runtime.passthrough is not None):
                self._reject(choice)
                return
            choice = pass_through(runtime, self.head)  # ALLOW_ANY: not a mesh Host, so where it was headed
            if isinstance(choice, Reject):
                self._reject(choice)
                return
        if choice.route.resilience.fault_policy is None and type(choice) is Forward:
            self._forward(choice)  # the usual case, without the two hops below
        else:
            self._route(choice)

    def _annotate(self, start_trace: bool, logged: bool) -> None:
        """Start a W3C trace when the request carries no trace context (outbound listeners), and give
        the request its ``x-request-id`` now when access logging (so the log line can name it)."""
        head = self.head
        if start_trace and not head.traced:
            head.headers.append((b"traceparent", _TRACES.next()))
            head.traced = True
        if logged and head.request_id is None:
            request_id = head.request_id = self.conn.context.ids.next()
            head.headers.append((b"x-request-id", request_id))

    def _reject(self, choice: Reject, message: str | None = None) -> None:
        self.route = choice.route
        self.cluster = choice.cluster
        self.flags = choice.flag
        self.respond_local(choice.status, choice.message if message is None else message, choice.stats)

    def _flag(self, flag: str) -> None:
        self.flags = f"{self.flags},{flag}" if self.flags else flag

    def _route(self, choice: Forward | Redirect) -> None:
        """The route is known: its fault (delay, then abort) comes before anything else."""
        route_res = choice.route.resilience
        if route_res.fault_policy is not None:
            fault = route_res.fault(self.conn.context.rng)
            if fault.delay_s:
                self.flags = "DI"
                self.timer = asyncio.get_running_loop().call_later(
                    fault.delay_s, self._after_fault_delay, choice, fault.abort_status
                )
                return
            if fault.abort_status:
                self.flags = "FI"
                self._local_for(choice)
                self.respond_local(fault.abort_status, ABORT_MESSAGE, choice.stats)
                return
        self._dispatch(choice)

    def _local_for(self, choice: Forward | Redirect) -> None:
        """A local answer on a known route (fault abort): the log names the route and cluster."""
        self.route = choice.route
        if isinstance(choice, Forward):
            self.cluster = choice.cluster

    def _after_fault_delay(self, choice: Forward | Redirect, abort_status: int) -> None:
        self.timer = None
        if self.done:
            return  # the client left during the delay
        if abort_status:
            self._flag("FI")
            self._local_for(choice)
            self.respond_local(abort_status, ABORT_MESSAGE, choice.stats)
        else:
            self._dispatch(choice)

    def _dispatch(self, choice: Forward | Redirect) -> None:
        if isinstance(choice, Redirect):
            self.respond_local(choice.status, choice.location, choice.stats, (("Location", choice.location),))
            return
        self._forward(choice)

    def _forward(self, choice: Forward) -> None:
        route = self.route = choice.route
        cluster = self.cluster = choice.cluster
        self.stats = choice.stats
        method = self.head.method
        plan = route.resilience.begin(
            cluster.resilience, _METHOD_NAMES.get(method) or method.decode("latin-1"), _monotonic()
        )
        if isinstance(plan, Overflow):
            self._flag("UO")
            self.respond_local(plan.status, plan.body, choice.stats, plan.headers)
            return
        self.plan = plan
        endpoint = self.endpoint = choice.endpoint
        self.target = choice.target
        self.set_cookie = choice.set_cookie
        cluster.load.start(endpoint.key)
        plan.attempt_started(endpoint.key, self.started)
        if route.mirrors:
            self._start_mirrors(route)
        if self.body_done:
            self._request_complete()
        self._acquire()

    async def _demand_then_retry(self, reject: Reject) -> None:
        """Registry mode: ask the source about an unknown Host; if it now routes it, dispatch again."""
        conn = self.conn
        context = conn.context
        host = self.head.host.decode("latin-1")
        assert context.demand is not None
        choice: Forward | Reject | Redirect = reject
        try:
            known = await context.demand(host)
            active = self.active = context.config.current
            runtime = active.listeners.get(context.name)
            if runtime is not None:
                if known:
                    choice = decide(runtime, self.head, conn.client_ip, context.rng)
                if isinstance(choice, Reject) and choice.unknown_host and runtime.passthrough is not None:
                    choice = pass_through(runtime, self.head)  # ALLOW_ANY: not a mesh Host
        except Exception:
            log.exception("registry lookup for host failed", extra={"host": host})
            choice = Reject(503, f"registry lookup failed for {host!r}", reject.stats)
        if self.done:
            return
        if isinstance(choice, Reject):
            unknown = f"unknown service {host!r}: no such service in the registry" if choice.unknown_host else None
            self._reject(choice, unknown)
        else:
            self._route(choice)

    def _acquire(self) -> None:
        cluster = self.cluster
        endpoint = self.endpoint
        assert cluster is not None
        assert endpoint is not None
        pools = self.conn.context.pools
        pool = pools.pools.get((endpoint.host, endpoint.port)) or pools.pool(endpoint.host, endpoint.port)
        idle = pool.idle
        if idle:  # the common case, inline: the warmest idle connection
            up = idle.pop()
            if not up.closed:
                pool.reused += 1
                self.on_upstream_ready(up, True)
                return
        self.wants_upstream = True
        ready = pools.acquire(
            pool, self, cluster.connect_timeout_s, cluster.max_connections, cluster.resilience.breaker
        )
        if ready is not None:
            self.on_upstream_ready(ready, True)
        elif self.body_done and not self.done:
            self._arm_deadline()

    # === pool callbacks ===

    def on_upstream_ready(self, up: UpstreamConnection, reused: bool) -> None:
        self.wants_upstream = False
        self.upstream = up
        self.reused = reused
        up.user = self
        up.requests += 1
        head = self.head
        up.reader.expect(self, head.method == b"HEAD")
        conn = self.conn
        forwarded = (
            conn.client_ip_bytes if head.forwarded_for is None else head.forwarded_for + b", " + conn.client_ip_bytes
        )
        route = self.route
        assert route is not None
        data = request_head_bytes(
            head,
            head.host if route.host is None else route.host,
            self.target,
            route.request_add,
            forwarded,
            None if head.request_id is not None else conn.context.ids.next(),
            route.request_remove,
        )
        transport = up.transport
        assert transport is not None
        plan = self.plan
        assert plan is not None
        if plan.retries and head.body != Body.NONE:
            replay = plan.replay_body()  # what earlier attempts already sent
            if replay:
                data += chunk(replay) if head.body == Body.CHUNKED else replay
        pending = self.pending
        if pending:
            self.pending = None
            self.pending_size = 0
            chunked = head.body == Body.CHUNKED
            parts = [data]
            for piece in pending:
                plan.keep_body(piece)
                parts.append(chunk(piece) if chunked else piece)
            data = b"".join(parts)
            conn.resume_for(PAUSE_BUFFER)
        if self.body_done and head.body == Body.CHUNKED:
            data += last_chunk(self.trailers or ())
        transport.write(data)
        if conn.write_paused:
            self.pause_upstream_reading()
        if up.write_paused:
            conn.pause_for(PAUSE_UPSTREAM)
        if self.body_done:
            self._arm_deadline()

    def on_pending_overflow(self) -> None:
        """The cluster's ``max_pending_requests`` are already waiting: the breaker's fast 503."""
        self.wants_upstream = False
        plan = self.plan
        assert plan is not None
        overflow = plan.overflow(MAX_PENDING)
        self._flag("UO")
        self.respond_local(overflow.status, overflow.body, self.stats, overflow.headers)

    def on_upstream_failed(self, kind: str, message: str) -> None:
        self.wants_upstream = False
        if not self.done:
            self._attempt_failed(_CONNECT_FAILED, 502, message, kind)

    # === request body from the client ===

    def on_request_body(self, data: bytes) -> None:
        if self.done:
            return  # a local answer was sent; the rest of the body is read and dropped
        if self.mirror_body is not None:
            self._mirror_piece(data)
        up = self.upstream
        if up is not None:
            transport = up.transport
            assert transport is not None
            transport.write(chunk(data) if self.head.body == Body.CHUNKED else data)
            plan = self.plan
            if plan is not None:
                plan.keep_body(data)
            return
        if self.pending is None:
            self.pending = []
        self.pending.append(data)
        self.pending_size += len(data)
        if self.pending_size > BODY_BUFFER_HIGH:
            self.conn.pause_for(PAUSE_BUFFER)

    def on_request_end(self, trailers: list[tuple[bytes, bytes]] | None) -> None:
        if self.body_done:
            return  # a request without a body was complete from its head on (see __init__)
        self.body_done = True
        if self.done:
            return
        self.trailers = trailers  # kept for a retry's replay
        if self.plan is not None:
            self._request_complete()
        up = self.upstream
        if up is not None:
            if self.head.body == Body.CHUNKED:
                transport = up.transport
                assert transport is not None
                transport.write(last_chunk(trailers or ()))
            self._arm_deadline()
        elif self.wants_upstream:
            self._arm_deadline()

    def _request_complete(self) -> None:
        """The whole request is in: the route timeout (and per-try timeout) start, mirrors leave."""
        plan = self.plan
        assert plan is not None
        plan.request_complete(_monotonic())
        if plan.policy is not None and plan.policy.per_try_timeout_s:
            self._arm_try_timer()
        if self.mirror_body is not None:
            self._send_mirrors()

    def _arm_deadline(self) -> None:
        plan = self.plan
        if plan is not None and self.deadline == 0.0:
            deadline = plan.route_deadline
            if deadline != NO_DEADLINE:
                self.deadline = deadline  # checked by the listener's sweep

    def _arm_try_timer(self) -> None:
        """A timer at the current attempt's per-try deadline (only routes with a per-try timeout)."""
        plan = self.plan
        assert plan is not None
        timer = self.timer
        if timer is not None:
            timer.cancel()
            self.timer = None
        deadline = plan.deadline()
        if deadline < plan.route_deadline:  # else the route timeout (listener sweep) comes first
            self.timer = asyncio.get_running_loop().call_later(deadline - _monotonic(), self._on_try_timeout)

    def _on_try_timeout(self) -> None:
        self.timer = None
        if self.done or self.response_started:
            return
        cluster = self.cluster
        if cluster is not None:
            cluster.errors.add("timeout")
        self._attempt_failed(_PER_TRY_TIMED_OUT, 504, TIMEOUT_MESSAGE, None)

    # === response from the upstream (ResponseSink) ===

    def on_interim(self, status: int, reason: bytes, fields: bytes) -> None:
        if self.head.version == b"1.1" and not self.done:
            transport = self.conn.transport
            assert transport is not None
            transport.write(interim_bytes(status, reason, fields))

    def on_response(self, status: int, reason: bytes, fields: bytes, keep_alive: bool) -> bool:
        """The final response head; returns whether the body is relayed raw (see ``framing``)."""
        if self.done:
            return False
        plan = self.plan
        if plan is not None and (plan.policy is not None or plan.cluster.outlier is not None):
            overloaded = status == 503 and _overloaded(fields)
            result = AttemptResult(status, None, None, overloaded) if overloaded else _result_for(status)
            verdict = plan.on_attempt_result(result, _monotonic(), self.conn.context.rng)
            if verdict.retry:
                self._retry(verdict.delay_s)
                return False  # the rest of this response is parsed and dropped (response stays None)
            if verdict.reason == _LIMIT_EXCEEDED and plan.retries:
                self._flag("URX")  # retried, and this answer would be retried again but for the limit
        timer = self.timer
        if timer is not None:  # the per-try timeout ends with the response head
            timer.cancel()
            self.timer = None
        head = self.head
        upgrade = status == 101
        if upgrade and head.upgrade is None:
            raise UpstreamProtocolError("101 Switching Protocols to a request that asked for no upgrade")
        response = self.response = response_head(
            status,
            reason,
            fields,
            request_method=head.method,
            upstream_keep_alive=keep_alive,
            client_version=head.version,
            # After a declined upgrade the client may already be sending tunnel bytes: close.
            client_keep_alive=head.keep_alive and self.body_done and not self.conn.closing and head.upgrade is None,
            upgrade=upgrade,
        )
        self.status = status
        route = self.route
        assert route is not None
        extra = route.response_add
        if self.set_cookie is not None:
            extra = (*extra, (b"Set-Cookie", self.set_cookie))
        # Collected and written once per upstream read (flush_out): head and body in one send.
        self.out.append(response_head_bytes(response, extra, route.response_remove, head.version))
        self.response_started = True
        return response.raw_body and not upgrade

    def on_response_raw(self, data: bytes) -> None:
        if not self.done and self.response is not None:
            self.out.append(data)

    def on_response_body(self, data: bytes) -> None:
        if not self.done and self.response is not None:
            self.out.append(data)  # decoded body to an HTTP/1.0 client: close-delimited

    def flush_out(self) -> None:
        """Write what this upstream read produced for the client, in one vectored write."""
        out = self.out
        if out:
            transport = self.conn.transport
            if transport is not None and not self.conn.closed:
                transport.writelines(out)
            out.clear()

    def on_response_end(self) -> None:
        response = self.response
        if response is None or self.done:
            return
        if response.status == 101:
            self._become_tunnel()
            return
        self.flush_out()
        self._complete(response.status)

    # === upstream connection events (UpstreamUser) ===

    def on_upstream_error(self, exc: Exception) -> None:
        log.debug("invalid upstream response", extra={"error": str(exc)})
        if self.response_started or self.done:
            self._fail(502, f"upstream protocol error: {exc}", "protocol")
        else:
            self._attempt_failed(_RESET, 502, f"upstream protocol error: {exc}", "protocol")

    def on_upstream_lost(self, exc: Exception | None) -> None:
        if self.done:
            return
        response = self.response
        if response is not None and response.body_in == Body.UNTIL_CLOSE and exc is None:
            # A close-delimited body ends with the connection (the parser cannot be told of EOF).
            self.on_response_end()
            return
        up = self.upstream
        if (
            not self.response_started
            and self.reused
            and not self.retried
            and self.head.body == Body.NONE
            and self.head.method in IDEMPOTENT
            and up is not None
            and up.reader.done is False
        ):
            self.retried = True
            self.upstream = None
            self.conn.context.pools.discard(up)
            self._acquire()
            return
        message = "upstream connect error or disconnect/reset before headers"
        if self.response_started:
            self._fail(502, message, "reset")
        else:
            self._attempt_failed(_RESET, 502, message, "reset")

    def on_upstream_write_paused(self) -> None:
        self.conn.pause_for(PAUSE_UPSTREAM)

    def on_upstream_write_resumed(self) -> None:
        self.conn.resume_for(PAUSE_UPSTREAM)

    # === client connection events (called by DownstreamConnection) ===

    def pause_upstream_reading(self) -> None:
        up = self.upstream
        if up is not None and not self.up_read_paused and up.transport is not None:
            self.up_read_paused = True
            up.transport.pause_reading()

    def resume_upstream_reading(self) -> None:
        up = self.upstream
        if self.up_read_paused:
            self.up_read_paused = False
            if up is not None and up.transport is not None and not up.closed:
                up.transport.resume_reading()

    def on_timeout(self) -> None:
        """The route timeout passed (called by the listener's sweep): 504, never retried."""
        if not self.done:
            cluster = self.cluster
            if cluster is not None:
                cluster.errors.add("timeout")
            plan = self.plan
            if plan is not None:
                plan.on_route_timeout()
            self._flag("UT")
            self._fail(504, TIMEOUT_MESSAGE, None)

    # === attempts and retries ===

    def _attempt_failed(self, result: AttemptResult, status: int, message: str, kind: str | None) -> None:
        """An attempt ended without a response head: retry it, or answer ``status``."""
        plan = self.plan
        if plan is not None:
            verdict = plan.on_attempt_result(result, _monotonic(), self.conn.context.rng)
            if verdict.retry:
                if kind is not None and self.cluster is not None:
                    self.cluster.errors.add(kind)
                self._retry(verdict.delay_s)
                return
            if result is _PER_TRY_TIMED_OUT:
                self._flag("UT")
            if verdict.reason == _LIMIT_EXCEEDED and plan.retries:
                self._flag("URX")
        self._fail(status, message, kind)

    def _retry(self, delay_s: float) -> None:
        """Drop this attempt's connection; after ``delay_s`` try another endpoint."""
        self.wants_upstream = False
        if self.pending_on is not None:
            release_pending_slot(self)
        self._release_upstream(False)
        if self.up_read_paused:
            self.up_read_paused = False
        self.conn.resume_for(PAUSE_UPSTREAM)
        timer = self.timer
        if timer is not None:
            timer.cancel()
        cluster = self.cluster
        endpoint = self.endpoint
        if cluster is not None and endpoint is not None:
            cluster.load.finish(endpoint.key, _monotonic() - self.started, False)
        self.endpoint = None
        self.timer = asyncio.get_running_loop().call_later(delay_s, self._next_attempt)

    def _next_attempt(self) -> None:
        self.timer = None
        if self.done:
            return
        plan = self.plan
        cluster = self.cluster
        assert plan is not None
        assert cluster is not None
        now = _monotonic()
        attempt = plan.next_attempt(now)
        balancer = cluster.balancer  # re-read: an ejection may have rebuilt it since the first pick
        endpoint = balancer.pick(PickContext(exclude=attempt.exclude) if attempt.exclude else NO_HINTS)
        if endpoint is None:
            self._flag("UH")
            self._fail(503, "no healthy upstream", None)
            return
        self.endpoint = endpoint
        cluster.load.start(endpoint.key)
        plan.attempt_started(endpoint.key, now)
        self.reused = False
        self.response = None
        if plan.policy is not None and plan.policy.per_try_timeout_s:
            self._arm_try_timer()
        self._acquire()

    # === mirrors ===

    def _start_mirrors(self, route: RouteRuntime) -> None:
        if self.conn.context.resilience is None:
            return
        targets = route.resilience.mirror_targets(self.conn.context.rng)
        if targets:
            self.mirrors = targets
            self.mirror_body = []
            for piece in self.pending or ():  # body that arrived before the exchange started
                if self.mirror_body is not None:
                    self._mirror_piece(piece)

    def _mirror_piece(self, data: bytes) -> None:
        body = self.mirror_body
        assert body is not None
        self.mirror_size += len(data)
        if self.mirror_size > MIRROR_BODY_LIMIT:
            self._drop_mirrors()
        else:
            body.append(data)

    def _send_mirrors(self) -> None:
        """The request is complete: one fire-and-forget copy per shadow cluster."""
        body = self.mirror_body
        targets, self.mirrors, self.mirror_body = self.mirrors, (), None
        active = self.active
        assert active is not None
        assert body is not None
        resilience = self.conn.context.resilience
        assert resilience is not None
        head = self.head
        route = self.route
        assert route is not None
        host = (head.host if route.host is None else route.host).decode("latin-1")
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in head.headers]
        payload = b"".join(body)
        for target in targets:
            runtime = active.clusters.get(target)
            endpoint = runtime.balancer.pick(NO_HINTS) if runtime is not None else None
            resilience.send_mirror(
                target, endpoint, head.method.decode("latin-1"), self.target.decode("latin-1"), host, headers, payload
            )

    def _drop_mirrors(self) -> None:
        targets, self.mirrors, self.mirror_body = self.mirrors, (), None
        resilience = self.conn.context.resilience
        if resilience is not None:
            for target in targets:
                resilience.drop_mirror(target)

    def on_request_broken(self, exc: HttpError) -> None:
        """The rest of the request body was malformed: nothing more will come."""
        self._flag("DPE")
        self._fail(exc.status, exc.reason, None)

    def on_client_lost(self) -> None:
        """The client connection closed before the exchange ended."""
        if self.done:
            return
        self.done = True
        self.wants_upstream = False
        self._release_upstream(False)
        if self.mirror_body is not None:
            self._drop_mirrors()
        self._flag("DC")
        self._record(CLIENT_CLOSED, ok=False)

    # === endings ===

    def respond_local(
        self,
        status: int,
        message: str,
        stats: RequestStats | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Answer from the proxy itself (no upstream involved)."""
        self.stats = stats
        self.status = status
        self.done = True
        conn = self.conn
        head = self.head
        keep_alive = head.keep_alive and self.body_done and not conn.closing
        transport = conn.transport
        if transport is not None:
            transport.write(
                error_response(
                    status,
                    message,
                    close=not keep_alive,
                    request_id=head.request_id,
                    head_request=head.method == b"HEAD",
                    headers=headers,
                )
            )
        self._record(status, ok=status < 500)
        conn.exchange_finished(self, keep_alive)

    def _fail(self, status: int, message: str, kind: str | None) -> None:
        if self.done:
            return
        cluster = self.cluster
        if kind is not None:
            self._flag(_KIND_FLAGS.get(kind, "UF"))
            if cluster is not None:
                cluster.errors.add(kind)
        self.wants_upstream = False
        self._release_upstream(False)
        if self.response_started:
            # Part of the response is out: the only honest signal left is cutting the connection.
            self.out.clear()
            self.done = True
            self._record(status, ok=False)
            self.conn.abort()
            return
        self.done = True
        self.status = status
        conn = self.conn
        keep_alive = self.head.keep_alive and self.body_done and not conn.closing
        transport = conn.transport
        if transport is not None:
            transport.write(
                error_response(
                    status,
                    message,
                    close=not keep_alive,
                    request_id=self.head.request_id,
                    head_request=self.head.method == b"HEAD",
                )
            )
        self._record(status, ok=False)
        conn.exchange_finished(self, keep_alive)

    def _complete(self, status: int) -> None:
        response = self.response
        assert response is not None
        self.done = True
        reusable = response.reuse_up and self.body_done
        self._release_upstream(reusable)
        self._record(status, ok=status < 500)
        self.conn.exchange_finished(self, response.keep_alive_down and self.body_done)

    def _release_upstream(self, reusable: bool) -> None:
        up = self.upstream
        if up is None:
            return
        self.upstream = None
        pools = self.conn.context.pools
        if self.up_read_paused:
            self.up_read_paused = False
            if reusable and up.transport is not None:
                up.transport.resume_reading()
        if reusable:
            cluster = self.cluster
            assert cluster is not None  # set before any upstream is acquired (``_acquire``)
            pools.release(up, cluster.idle_timeout_s, cluster.max_requests_per_connection)
        else:
            up.user = None
            if self.response_started or not self.body_done or not up.reader.done:
                up.abort()
            pools.discard(up)

    def _record(self, status: int, ok: bool) -> None:
        """The exchange is over, however it ended (called exactly once)."""
        if self.pending_on is not None:  # gave up while queued for a connection
            release_pending_slot(self)
        plan = self.plan
        if plan is not None:
            plan.finish()
            timer = self.timer
            if timer is not None:
                timer.cancel()
                self.timer = None
            if self.mirror_body is not None:
                self._drop_mirrors()
        elif self.timer is not None:  # a fault delay the exchange did not outlive
            self.timer.cancel()
            self.timer = None
        elapsed = _monotonic() - self.started
        stats = self.stats
        if stats is not None:
            if self.flags:
                stats.record_flagged(status, self.flags, elapsed)
            else:
                stats.record(status, elapsed)
        endpoint = self.endpoint
        cluster = self.cluster
        if endpoint is not None and cluster is not None:
            cluster.load.finish(endpoint.key, elapsed, ok)
        active = self.active
        if active is not None and active.access_log is not None:
            active.access_log.record(self, status, elapsed)

    # === upgrade ===

    def _become_tunnel(self) -> None:
        """101 from the upstream: both connections now carry raw bytes."""
        self.flush_out()
        self.done = True
        up = self.upstream
        conn = self.conn
        assert up is not None
        assert up.transport is not None
        assert conn.transport is not None
        self.upstream = None
        up.user = None
        self._record(101, ok=True)
        context = conn.context
        relay = Relay(
            conn.transport,
            up.transport,
            idle_timeout_s=context.settings.tunnel_idle_timeout_s,
            now=_monotonic(),
            on_close=context.tunnels.discard,
        )
        up.relay = relay
        if self.up_read_paused:
            self.up_read_paused = False
            up.transport.resume_reading()
        conn.become_tunnel(self, relay)


def _overloaded(fields: bytes) -> bool:
    """The 503 carries the next hop's overflow mark (never retried into a tripped breaker)."""
    lowered = fields.lower()
    return b"x-mesh-overflow" in lowered or b"x-envoy-overloaded" in lowered


_RESULTS = {status: AttemptResult(status) for status in range(100, 600)}  # no allocation per response


def _result_for(status: int) -> AttemptResult:
    return _RESULTS.get(status) or AttemptResult(status)


_METHOD_NAMES = {m: m.decode() for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")}

# Envoy response flags for an upstream failure kind (``cluster.errors`` kinds).
_KIND_FLAGS = {"connect_failure": "UF", "connect_timeout": "UF", "reset": "UC", "protocol": "UPE", "timeout": "UT"}
_TRACES = TraceParents()
_LIMIT_EXCEEDED = "limit_exceeded"  # ``Verdict.reason`` when only num_retries stopped another retry

_CONNECT_FAILED = AttemptResult(failure=CONNECT_FAILURE)
_RESET = AttemptResult(failure=RESET)
_PER_TRY_TIMED_OUT = AttemptResult(failure=PER_TRY_TIMEOUT)

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})  # RFC 9110 §9.2.2

# Reasons the client connection's reading is paused (bit flags, see DownstreamConnection).
PAUSE_QUEUE = 1
PAUSE_UPSTREAM = 2
PAUSE_BUFFER = 4
PAUSE_UPGRADE = 8
