"""Benchmarks: each module `bench/bench_*.py` has `main(args) -> list[Figure]` and prints
its figures, its baseline measured in the same run, and the ratio against the target."""
