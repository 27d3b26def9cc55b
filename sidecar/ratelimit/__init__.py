"""Request rate limits at the sidecar's inbound listeners (``RateLimitPolicy``, ``mesh.rules.ratelimit``).

- ``buckets``: Envoy's token bucket, one per client key (pure, injected clock).
- ``shared``: a fixed-window budget shared by every sidecar of a workload, counted in the
  registry's KV with check-and-set, batched (no KV round trip per request).
- ``limiter``: the limits of one snapshot compiled for the request path, over state that
  outlives snapshots (a config push does not refill anybody's bucket).
"""
