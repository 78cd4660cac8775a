"""Benchmarks (``logpipe bench ...``)."""
