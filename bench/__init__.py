"""Benchmarks run by `make bench` (`python -m bench`); results go to `bench-results.json`.

How to add a benchmark
----------------------
1. Create a module `bench/bench_<area>.py` (every `bench_*` module of this package is imported on start).
2. In it, register an `async def` that takes a `BenchContext` and returns a list of `Result`::

       from bench.harness import BenchContext, Result, benchmark

       @benchmark("entitlements.check_unary", requires=("grpc.empty_unary",))
       async def check_unary(ctx: BenchContext) -> list[Result]:
           \"\"\"Calls/s of Check against a running entitlements service.\"\"\"
           ...
           return [Result("entitlements.check_unary", value, "calls/s", reference="grpc.empty_unary")]

   * The name is `<area>.<figure>`; `make bench NAME=<prefix>` runs the benchmarks whose name starts with it.
   * `reference` names another figure measured in the same run; the harness fills `ratio = value / that`.
     List the benchmark producing it in `requires` so it is run too when the name filter leaves it out.
   * Honour `ctx.quick` (`--quick`, `BENCH_QUICK=1`): a run of a few seconds, used by the unit tests.
   * Bound everything in time, start servers and load generators as child processes and kill them in a
     `finally` (`bench.rpcload.running_server` does it), listen on 127.0.0.1 only.
   * For a unary RPC, use `bench.rpcload.measure_unary` + `unary_results`: the same load generator as the
     `grpc.empty_unary` ceiling, so that the ratio compares like with like.
3. Document it (meaning and target) in `docs/benchmarks.md`.
"""
