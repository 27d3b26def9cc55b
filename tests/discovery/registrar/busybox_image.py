"""The registrar tests' (and benchmark's) container image: busybox-static imported as a root file system.

``docker import`` of a tar built here: /bin/busybox with a symlink per applet (sh, httpd, nc ...),
/www/index.html, /tmp. No registry or network is needed. The tag is a hash of the inputs, so a
changed busybox rebuilds it and an unchanged one is reused. Plain functions, no pytest.
"""

from __future__ import annotations

import hashlib
import io
import struct
import subprocess
import tarfile
from pathlib import Path

IMAGE_REPO = "mesh-registrar-test-busybox"
BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")
INDEX_HTML = b"hello from busybox\n"


def static_busybox() -> Path | None:
    """A statically linked busybox (package busybox-static): it runs in an image with no libc."""
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file() and not _has_interpreter(path.read_bytes()):
            return path
    return None


def _has_interpreter(elf: bytes) -> bool:
    """Does this 64-bit little-endian ELF name a dynamic loader (PT_INTERP)? Dynamic ones do."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return True  # not something we can read: treat as unusable
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    return any(struct.unpack_from("<I", elf, phoff + i * phentsize)[0] == 3 for i in range(phnum))


def ensure_image(docker: str, busybox: Path) -> str:
    """The image name (``repo:tag``), importing it first if the daemon does not have it."""
    binary = busybox.read_bytes()
    image = f"{IMAGE_REPO}:{hashlib.sha256(binary + INDEX_HTML).hexdigest()[:12]}"
    if subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode == 0:
        return image
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        _add_dir(tar, "bin")
        _add_dir(tar, "www")
        _add_dir(tar, "tmp", mode=0o1777)
        _add_file(tar, "bin/busybox", binary, 0o755)
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type = tarfile.SYMTYPE
                link.linkname = "busybox"
                tar.addfile(link)
        _add_file(tar, "www/index.html", INDEX_HTML, 0o644)
    subprocess.run(
        [docker, "import", "--change", 'CMD ["sh"]', "-", image],
        input=archive.getvalue(),
        capture_output=True,
        check=True,
        timeout=120,
    )
    return image


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))
