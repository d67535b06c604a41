"""Dedup between versions under the chunk-size policy, and the leader metadata it costs.

``python -m benchmarks.edit_dedup [--edit-bytes 100] [--seed 1]``

For a file edited in place (``--edit-bytes`` overwritten in the middle, size unchanged) it prints, per
file size, the chunk size the policy gives (``shared/chunk_size.py``, the leader's defaults), the
fraction of the new version's chunks that the old version already has (those are not stored again),
and the leader's chunk-list bytes per TiB stored in files of that size. The chunks are cut and hashed
by the user app's own chunker, so this is what a real upload does; tests/test_chunk_size_policy.py
checks the same on a running cluster.
"""

from __future__ import annotations

import argparse
import random

from shared.chunk_size import leader_bytes_per_tib, policy_chunk_size
from shared.config import LeaderSettings
from user_app.chunker import split_piece

SIZES = [200 * 1024, 3 * 1024**2, 20 * 1024**2, 256 * 1024**2]
METADATA_SIZES = [3 * 1024**2, 20 * 1024**2, 256 * 1024**2, 2 * 1024**3, 16 * 1024**3]


def _digests(data: bytes, chunk_size: int) -> list[bytes]:
    return [d for d, _ in split_piece(data, chunk_size).chunks]


def shared_fraction(size: int, chunk_size: int, edit_bytes: int, rng: random.Random) -> float:
    """Fraction (0-1) of the edited version's chunks that the original already holds."""
    old = b"".join(rng.randbytes(min(1 << 20, size - i)) for i in range(0, size, 1 << 20))
    at = size // 2
    new = old[:at] + rng.randbytes(edit_bytes) + old[at + edit_bytes:]
    have = set(_digests(old, chunk_size))
    mine = _digests(new, chunk_size)
    return sum(d in have for d in mine) / len(mine)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edit-bytes", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    s = LeaderSettings()
    rng = random.Random(args.seed)
    policy = (s.chunk_size, s.max_chunk_size, s.target_chunks_per_file)
    print(f"policy: CHUNK_SIZE={s.chunk_size} MAX_CHUNK_SIZE={s.max_chunk_size} "
          f"TARGET_CHUNKS_PER_FILE={s.target_chunks_per_file}; {args.edit_bytes} bytes overwritten mid-file")
    print(f"{'file size':>10} {'chunk size':>11} {'chunks':>8} {'shared with old version':>24}")
    for size in SIZES:
        cs = policy_chunk_size(size, *policy)
        frac = shared_fraction(size, cs, args.edit_bytes, rng)
        print(f"{_human(size):>10} {_human(cs):>11} {-(-size // cs):>8} {frac:>23.2%}")
    print(f"\n{'file size':>10} {'leader metadata per TiB, 1 KiB chunks':>38} {'with the policy':>16}")
    for size in METADATA_SIZES:
        print(f"{_human(size):>10} {_human(leader_bytes_per_tib(size, s.chunk_size)):>38} "
              f"{_human(leader_bytes_per_tib(size, policy_chunk_size(size, *policy))):>16}")


if __name__ == "__main__":
    main()
