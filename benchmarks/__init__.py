"""pycmlt kernel microbenchmarks and end-to-end timings (run: python -m benchmarks --help)."""
