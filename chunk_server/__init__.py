"""RingFS chunk server: stores content-addressed chunks with two-phase commit (``python -m chunk_server``)."""
