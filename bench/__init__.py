"""Benchmarks: ferryman against the same migration typed by hand with criu, plus physical floors.

Run from the repository root as ``python -m bench.run`` (``make bench``); see bench/README.md.
"""
