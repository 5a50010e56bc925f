"""Benchmarking: what ``pubsub bench`` measures, kept apart from the library's core.

``runner`` holds the throughput and dispatch-overhead benchmark compared with the seed's
service levels, ``scenarios`` the hot-path scenarios each measured against its floor
(also used by ``benchmarks/peers.py``). Both are plain library code: the command renders
their results, and neither module imports typer or rich.
"""
