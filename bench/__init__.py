"""Benchmarks: `make bench` runs bench/run.py; bench/ceiling.py is the raw ASGI ceiling."""
