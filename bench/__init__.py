"""Benchmarks: `make bench` runs every bench/bench_*.py module's ``main()`` in
turn; each prints its figures. docs/benchmarks.md records them."""
