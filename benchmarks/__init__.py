"""Speed, memory and serving benchmarks. Run each one from the repository root as a module, e.g.
``uv run python -m benchmarks.bench_training --help``; every script takes its shared parts (run header, result
files, plots) from :mod:`benchmarks.common`."""
