"""The chunk store: content-addressed chunks in one SQLite database with two-phase commit.

One class, :class:`ChunkStore`, assembled from one base and one mixin per concern (each module's
docstring tells its part of the design):

* :mod:`.schema`: the tables, the layout constants and their measurements, the row-level SQL shared by
  the concerns below.
* :mod:`.connections`: :class:`Connections`, the base: the writer, reader and checkpointer threads and
  their connections, ``_write`` / ``_read``, ``close()``; durability.
* :mod:`.txns`: :class:`TwoPhaseCommit`: prepare, prepare_many, commit, abort, sweep; dedup and pins.
* :mod:`.maintenance`: :class:`Maintenance`: replicate, iter_committed, quarantine, quarantined,
  gc_candidates, gc_delete, delete_if_replicated, vacuum.
* :mod:`.meta`: :class:`Meta`: get_meta, set_meta, stats, disk_bytes.
* :mod:`.reads`: :class:`Reads`: read_many, presence_many.

Every public method is a coroutine that runs its SQL off the event loop; each write method is one SQL
transaction.
"""

from .maintenance import Maintenance, Removed
from .meta import Meta
from .reads import Reads
from .schema import COMMITTED, PENDING
from .txns import PrepareResult, TwoPhaseCommit

__all__ = ["COMMITTED", "PENDING", "ChunkStore", "PrepareResult", "Removed"]


class ChunkStore(TwoPhaseCommit, Maintenance, Meta, Reads):
    """Chunks of one chunk server, in ``data_dir/chunks.db``: ``ChunkStore(data_dir, fsync=False,
    readers=4)``, see :class:`.connections.Connections` for the arguments and the errors raised."""
