"""Per-operation work: the difference of two snapshots of a cumulative WorkRecord."""

from __future__ import annotations

from dataclasses import fields, replace

from flexserve.soc.work import WorkRecord


def snapshot(work: WorkRecord) -> WorkRecord:
    return replace(work)


def since(work: WorkRecord, before: WorkRecord) -> WorkRecord:
    """Work done after ``before`` was taken."""
    return WorkRecord(**{f.name: getattr(work, f.name) - getattr(before, f.name)
                         for f in fields(work)})
