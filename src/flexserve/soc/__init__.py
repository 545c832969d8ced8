"""Emulated SoC hardware: frames, stage-2 tables, SMMU, TZASC, NPU, flash, board assembly.

Functional and clock-free: operations report what they did as :class:`WorkRecord` counts
and signal faults as :class:`flexserve.errors.HardwareFault` subclasses. Policy (who may
map what) belongs to the firmware in :mod:`flexserve.monitor`.
"""
