"""Benchmarks: host engine speed now; the paper's experiments later."""
