#!/usr/bin/env python3
"""CPU per JWT check in the sidecar's verifier: a token seen before (cache) and a new one each time.

    flock /tmp/mesh-bench.lock .venv/bin/python bench/jwt_micro.py [--count 2000] [--rounds 5]

``mesh.security.jwt.JwtAuthenticator.authenticate`` on a request's headers, as the inbound
sidecar calls it, for RS256 (2048-bit) and ES256 keys: ``new`` tokens pay the base64/JSON parse
and the signature check (PyJWT over ``cryptography``); ``cached`` tokens are found in the
verified-token cache and pay the header scan and an expiry check. Process CPU time
(``time.process_time``), best and median of the rounds, in µs per check. No peer: Envoy's
jwt_authn is C++ and not installable here; the figure to compare is the sidecar's ~50 µs per
proxied request (bench/sidecar_bench.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.benchlib import table
from mesh.rules.request_authentication import JwtRule
from mesh.security.claims import Authenticated
from mesh.security.jwt import JwtAuthenticator
from tests.mesh.security.jwt_keys import ISSUER, SigningKey, ec_key, jwks, rsa_key


def per_check_us(authenticator: JwtAuthenticator, requests: list[list[tuple[bytes, bytes]]]) -> float:
    started = time.process_time()
    for headers in requests:
        outcome = authenticator.authenticate(headers, "")
        assert isinstance(outcome, Authenticated)
    return (time.process_time() - started) / len(requests) * 1e6


def measure(key: SigningKey, count: int, rounds: int) -> dict[str, dict[str, float]]:
    results: dict[str, list[float]] = {"new": [], "cached": []}
    for _ in range(rounds):
        tokens = [key.token({"n": i, "groups": ["dev"]}) for i in range(count)]
        requests = [[(b"Host", b"web"), (b"Authorization", f"Bearer {t}".encode())] for t in tokens]
        authenticator = JwtAuthenticator([JwtRule(ISSUER, jwks=jwks(key))])
        results["new"].append(per_check_us(authenticator, requests))
        recent = requests[-500:]  # still in the verified-token cache (1,024 entries)
        results["cached"].append(per_check_us(authenticator, recent * max(1, count // len(recent))))
    return {kind: {"best": min(v), "median": statistics.median(v)} for kind, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="checks per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    for label, key in (("RS256", rsa_key()), ("ES256", ec_key())):
        figures[label] = measure(key, args.count, args.rounds)
    rows = [
        [label, kind, f"{f[kind]['best']:.1f}", f"{f[kind]['median']:.1f}"]
        for label, f in figures.items()
        for kind in ("new", "cached")
    ]
    print(table(rows, ["algorithm", "token", "best µs/check", "median µs/check"]))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
