"""Benchmarks: in-process engine figures now; the full serving harness builds on it."""
