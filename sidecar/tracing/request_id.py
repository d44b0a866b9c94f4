"""x-request-id: keep a sane incoming value (a sidecar is not an edge), otherwise make a UUID4."""

from __future__ import annotations

import random

MAX_LENGTH = 128
_VISIBLE = bytes(range(0x21, 0x7F))


def is_valid_request_id(value: bytes) -> bool:
    """Sane: 1..128 bytes of visible ASCII (no spaces, no controls) so it is safe in logs and tags."""
    return 0 < len(value) <= MAX_LENGTH and not value.translate(None, _VISIBLE)


def new_request_id(rng: random.Random) -> str:
    """A lowercase RFC 4122 version 4 UUID string, from `rng` (cheaper than uuid.uuid4 per request)."""
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF << 76)) | (0x4 << 76)  # version 4
    bits = (bits & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
