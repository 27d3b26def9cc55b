"""Running one probe (the I/O edge): HTTP GET, TCP connect or a command, bounded by the probe's timeout.

- HTTP: one ``GET`` over a fresh connection (``Connection: close``, ``User-Agent: kube-probe/mesh``,
  the probe's ``httpHeaders``); a status 200-399 passes, as the kubelet decides (redirects are not
  followed: a 3xx is a success). HTTPS does not verify the certificate (the kubelet does not either).
- TCP: the connection opens (then is closed at once).
- exec: the command runs in the sidecar's environment, as a Consul agent runs script checks; exit
  0 passes, 1 is a warning (Consul), anything else, or running past the timeout, is critical. Its
  first 4 KiB of output go to the check's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl

from mesh.model.probes import ProbeSpec
from sidecar.probes.state import CRITICAL, PASSING, WARNING, Result, Status

MAX_OUTPUT = 4096
_USER_AGENT = "kube-probe/mesh"


async def run_probe(spec: ProbeSpec) -> Result:
    """Run ``spec`` once; never raises for a failed probe (that is a critical result)."""
    if spec.kind == "http":
        return await probe_http(spec)
    if spec.kind == "tcp":
        return await probe_tcp(spec)
    return await probe_exec(spec)


async def probe_http(spec: ProbeSpec) -> Result:
    what = spec.describe()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(spec.timeout):
            context = _insecure_context() if spec.scheme == "HTTPS" else None
            reader, writer = await asyncio.open_connection(spec.host, spec.port, ssl=context)
            host = f"[{spec.host}]" if ":" in spec.host else spec.host
            lines = [f"GET {spec.path} HTTP/1.1", f"Host: {host}:{spec.port}", f"User-Agent: {_USER_AGENT}"]
            lines += ["Accept: */*", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in spec.headers]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
            status_line = (await reader.readline()).decode("latin-1").strip()
    except TimeoutError:
        return Result(CRITICAL, f"{what}: timed out after {spec.timeout:g}s")
    except (OSError, UnicodeError, ssl.SSLError) as exc:
        return Result(CRITICAL, f"{what}: {_reason(exc)}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return Result(CRITICAL, f"{what}: not an HTTP response: {status_line[:100]!r}")
    code = int(parts[1])
    status: Status = PASSING if 200 <= code < 400 else CRITICAL
    return Result(status, f"{what}: {code} {parts[2] if len(parts) > 2 else ''}".rstrip())


async def probe_tcp(spec: ProbeSpec) -> Result:
    what = spec.describe()
    try:
        async with asyncio.timeout(spec.timeout):
            _, writer = await asyncio.open_connection(spec.host, spec.port)
    except TimeoutError:
        return Result(CRITICAL, f"{what}: timed out after {spec.timeout:g}s")
    except OSError as exc:
        return Result(CRITICAL, f"{what}: {_reason(exc)}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return Result(PASSING, f"{what}: Success")


async def probe_exec(spec: ProbeSpec) -> Result:
    what = spec.describe()
    try:
        process = await asyncio.create_subprocess_exec(
            *spec.command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
    except OSError as exc:
        return Result(CRITICAL, f"{what}: {_reason(exc)}")
    try:
        async with asyncio.timeout(spec.timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        return Result(CRITICAL, f"{what}: timed out after {spec.timeout:g}s")
    text = output[:MAX_OUTPUT].decode("utf-8", "replace").strip()
    code = process.returncode
    status: Status = PASSING if code == 0 else WARNING if code == 1 else CRITICAL
    return Result(status, f"{what}: exit {code}" + (f": {text}" if text else ""))


def _insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's "Connect call failed (...)" hides the reason
    return str(exc) or type(exc).__name__


__all__ = ["MAX_OUTPUT", "probe_exec", "probe_http", "probe_tcp", "run_probe"]
