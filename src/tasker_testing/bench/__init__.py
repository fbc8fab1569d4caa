"""`python -m tasker_testing.bench`: speed measured against the usual alternatives, same run.

Sections: builds, stack, database, suite, latency (with memory). See docs/benchmarks.md.
"""
