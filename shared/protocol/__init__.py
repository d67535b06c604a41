"""The wire protocol between RingFS services and of the user API's binary batches, split by concern.

* :mod:`shared.protocol.rules`: the rules and bounds every side shares (transaction ids, batch sizes,
  read candidates, header names), each defined once.
* :mod:`shared.protocol.models`: the JSON models that really travel (``VersionInfo``, ``RingView``,
  ``VersionPrepare``, ...), built and parsed on both sides.
* :mod:`shared.protocol.frames`: chunk data on the wire: digests, chunk frames, txn sections, presence bytes.
* :mod:`shared.protocol.manifests`: a version's metadata plus its packed chunk list, one or many.
* :mod:`shared.protocol.batches`: many files or many version prepares in one body (``/batch/write``,
  ``/batch/read``, ``/txns/batch``).

Chunk data never travels as JSON or base64. Every decoder raises :class:`shared.errors.BadRequest` on
malformed input, so a peer's bad body is a 400, never a 500; every encoder raises the same for input it
cannot frame. The contract is written out in docs/protocol.md.
"""
