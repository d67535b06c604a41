"""RingFS benchmark: ``python -m benchmarks --help``. See docs/benchmark.md."""
