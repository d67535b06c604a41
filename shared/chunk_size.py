"""The chunk-size policy: a chunk size that fits the file.

The reference design cuts every file into 1 KB chunks "to optimize storage for small files" and does
"not plan to handle very large files". RingFS does handle them (video), and 1 KiB chunks there cost
32 bytes of leader metadata per KiB (32 GiB per TiB) and a million chunk operations per GiB. So the
leader publishes a policy with the ring (``GET /ring``) and every user app applies it the same way:

* a file of ``size`` bytes gets the smallest ``CHUNK_SIZE × 2**k`` that keeps it at or under
  ``TARGET_CHUNKS_PER_FILE`` chunks, capped at ``MAX_CHUNK_SIZE`` (documents stay at 1 KiB chunks; with
  the defaults anything up to 4 MiB does);
* an upload whose size is not announced (no ``Content-Length``) is buffered up to the policy's
  threshold (``CHUNK_SIZE × TARGET_CHUNKS_PER_FILE`` bytes): if it ends there, its size is known and the
  rule above applies; if it goes on, it gets ``STREAMED_CHUNK_SIZE``;
* ``?chunk_size=`` overrides the policy, within ``[MIN_CHUNK_SIZE, MAX_CHUNK_SIZE]``.

The size is a pure function of the file's size, so two versions of one file of the same size are cut
at the same boundaries and share every chunk that an edit in place did not touch (dedup between
versions; ``benchmarks/edit_dedup.py`` measures it). Like HDFS's per-file block size and SeaweedFS's
chunk size per upload, the chunk size is stored per version, so changing the policy never breaks a
version already written.
"""

from __future__ import annotations

from shared.protocol.frames import DIGEST_SIZE
from shared.protocol.rules import expected_chunks

TIB = 1024**4


def policy_chunk_size(size: int, chunk_size: int, max_chunk_size: int, target_chunks: int) -> int:
    """The chunk size (bytes) for a ``size``-byte file: ``chunk_size × 2**k`` for the smallest ``k`` that
    keeps ``expected_chunks(size, ·) <= target_chunks``, never above ``max_chunk_size``. ``target_chunks``
    0 turns the policy off (always ``chunk_size``)."""
    if target_chunks <= 0 or size <= chunk_size * target_chunks:
        return chunk_size
    chosen = chunk_size
    while chosen < max_chunk_size and expected_chunks(size, chosen) > target_chunks:
        chosen *= 2
    return min(chosen, max_chunk_size)


def leader_bytes_per_tib(file_size: int, chunk_size: int) -> int:
    """Leader metadata (bytes) for the chunk lists of 1 TiB stored as ``file_size``-byte files cut into
    ``chunk_size``-byte chunks: one ``DIGEST_SIZE``-byte digest per chunk (per-version rows aside)."""
    files = TIB / file_size
    return round(files * expected_chunks(file_size, chunk_size) * DIGEST_SIZE)
