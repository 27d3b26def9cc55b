"""Load balancing policies for the sidecar: pure, standard library only, no I/O and no asyncio.

    balancer = build_balancer(spec, endpoints, load=tracker, rng=random.Random(), clock=time.monotonic)
    endpoint = balancer.pick(PickContext(hash_key=key, exclude=frozenset(tried)))

Build once per endpoint-set update and swap the new balancer in; pick per request. Each policy is
one module (round_robin, weighted_round_robin, random_pick, least_request, peak_ewma, ring_hash,
maglev); base.py holds what they share (health filtering, panic mode, retry exclusion).
"""

from lb.affinity import Affinity, SessionCookie, affinity_hash_key, session_cookie
from lb.base import Balancer, select_candidates
from lb.endpoint import NO_HINTS, Endpoint, PickContext
from lb.factory import POLICIES, build_balancer
from lb.hashing import endpoint_token
from lb.load import EndpointLoad, LoadTracker
from lb.spec import HASH_POLICY_KINDS, POLICY_KINDS, PolicySpec, affinity_from_dict, is_prime, policy_from_dict

__all__ = [
    "HASH_POLICY_KINDS",
    "NO_HINTS",
    "POLICIES",
    "POLICY_KINDS",
    "Affinity",
    "Balancer",
    "Endpoint",
    "EndpointLoad",
    "LoadTracker",
    "PickContext",
    "PolicySpec",
    "SessionCookie",
    "affinity_from_dict",
    "affinity_hash_key",
    "build_balancer",
    "endpoint_token",
    "is_prime",
    "policy_from_dict",
    "select_candidates",
    "session_cookie",
]
