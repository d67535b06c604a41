"""Factories for test data."""

from __future__ import annotations

import hashlib
import os
import random


def random_bytes(n: int, seed: int | None = None) -> bytes:
    """``n`` random bytes; reproducible with ``seed``."""
    if seed is None:
        return os.urandom(n)
    return random.Random(seed).randbytes(n)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
