"""The sidecar's process imports only what every sidecar needs (its memory is a benchmarked target):
the HTTP client library, the JOSE library and `cryptography` load only when a snapshot uses them."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = ("aiohttp", "jwt", "cryptography")  # shared rate limits, JWT rules, mTLS material


def test_the_sidecar_entry_point_stays_lean() -> None:
    probe = "import json, sys, sidecar.main; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout))
    assert not loaded & set(LAZY), sorted(loaded & set(LAZY))
