"""The chunk store: content-addressed chunks appended to segment files, indexed in SQLite, with two-phase
commit (docs/chunk-store.md).

One class, :class:`ChunkStore`, assembled from one base and one mixin per concern (each module's
docstring tells its part of the design):

* :mod:`.segments`: :class:`SegmentLog`, the segment files: record format, append, pread, removal.
* :mod:`.schema`: the index's tables and constants, the row-level SQL shared by the concerns below.
* :mod:`.connections`: :class:`Connections`, the base: the files, the writer, reader and checkpointer
  threads and their connections, ``_write`` / ``_read``, ``close()``; durability.
* :mod:`.recovery`: opening after a stop or a crash: orphaned tails and files, torn records.
* :mod:`.migrate`: the one-time move of a store of the old one-database layout into segments.
* :mod:`.txns`: :class:`TwoPhaseCommit`: prepare, prepare_many, commit, abort, sweep; dedup and pins.
* :mod:`.maintenance`: :class:`Maintenance`: replicate, iter_committed, quarantine, quarantined,
  gc_candidates, gc_delete, delete_if_replicated.
* :mod:`.compaction`: :class:`Compaction`: compaction_candidates, compact_segment (space of dead records).
* :mod:`.meta`: :class:`Meta`: get_meta, set_meta, stats, disk_bytes.
* :mod:`.reads`: :class:`Reads`: read_many, presence_many.

Every public method is a coroutine that runs its SQL and file I/O off the event loop (small reads
excepted, connections.py); each write method is one SQL transaction.
"""

from .compaction import Compacted, Compaction
from .maintenance import Maintenance, Removed
from .meta import Meta
from .reads import Reads
from .schema import COMMITTED, PENDING
from .txns import PrepareResult, TwoPhaseCommit

__all__ = ["COMMITTED", "PENDING", "ChunkStore", "Compacted", "PrepareResult", "Removed"]


class ChunkStore(TwoPhaseCommit, Maintenance, Compaction, Meta, Reads):
    """Chunks of one chunk server, under ``data_dir``: ``ChunkStore(data_dir, fsync=False, readers=4,
    segment_bytes=256 MiB)``, see :class:`.connections.Connections` for the arguments and the errors
    raised."""
