"""Agent workflows: DAGs of LLM calls, their TOML form, builtins, and a next-model predictor.

These modules are policy and data only: they import nothing from the trusted applications, the
system runner or the engine's model code, so the scheduler and the cache can depend on them.
"""

from __future__ import annotations

from flexserve.workflow.spec import LlmCall, Workflow

__all__ = ["LlmCall", "Workflow"]
