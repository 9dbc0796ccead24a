"""`python -m bench`: run the benchmarks (see `bench` for how to add one)."""

from bench.harness import main

raise SystemExit(main())
