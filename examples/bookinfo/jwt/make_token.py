#!/usr/bin/env python3
"""Mint a token for the bookinfo JWT examples, signed with the demo key in this directory.

    python examples/bookinfo/jwt/make_token.py                       # sub alice, valid for an hour
    python examples/bookinfo/jwt/make_token.py --groups group1       # with a groups claim
    python examples/bookinfo/jwt/make_token.py --expires -60         # an expired one

The key is a published demo key (like Istio's samples/jwt key): anyone can mint tokens with it.
Never trust it outside a demo.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jwt

HERE = Path(__file__).resolve().parent
ISSUER = "demo@mesh.example"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sub", default="alice", help="the subject (request principal: demo@mesh.example/<sub>)")
    parser.add_argument("--groups", default="", help="comma-separated values of the groups claim")
    parser.add_argument("--expires", type=int, default=3600, help="seconds from now until exp (negative: expired)")
    args = parser.parse_args()
    now = int(time.time())
    claims: dict[str, object] = {"iss": ISSUER, "sub": args.sub, "iat": now, "exp": now + args.expires}
    if args.groups:
        claims["groups"] = [g for g in args.groups.split(",") if g]
    key = (HERE / "key.pem").read_bytes()
    print(jwt.encode(claims, key, algorithm="RS256", headers={"kid": "mesh-demo"}))


if __name__ == "__main__":
    main()
