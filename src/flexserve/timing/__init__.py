"""Temporal truth: device profiles (rates and latencies with their sources) and, built on
them, the cost functions and SimPy resources that turn counted work into simulated seconds.

The profile is the only place where device numbers live. Every number carries a citation;
see ``docs/calibration.md`` and ``timing/profiles/README.md``.
"""
