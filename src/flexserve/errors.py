"""The one error hierarchy of FlexServe.

Every error a user can provoke derives from :class:`FlexServeError`, so the CLI and the
server can turn any of them into a clear message without a traceback. Integrity failures
are always the same :class:`SecurityError` with no detail, so an attacker learns nothing
from which check failed.
"""

from __future__ import annotations


class FlexServeError(Exception):
    """Base of every error FlexServe raises on purpose."""


class ConfigError(FlexServeError):
    """Invalid configuration or argument value (sampling values, sizes, profile fields)."""


class ModelError(FlexServeError):
    """A model cannot be used: missing, unreadable or inconsistent."""


class ModelNotFoundError(ModelError):
    """No model with that name or path."""


class ModelFormatError(ModelError):
    """A model file is truncated, corrupt or not a GGUF file."""


class UnsupportedArchitectureError(ModelError):
    """The model's architecture is not implemented."""


class UnsupportedQuantizationError(ModelError):
    """A tensor uses a quantization type that cannot be dequantized."""


class ContextOverflowError(FlexServeError):
    """The prompt (plus requested tokens) does not fit the model's context."""


class TokenizerError(FlexServeError):
    """The tokenizer or chat template cannot be built or rendered."""


class HardwareFault(FlexServeError):
    """Base of faults raised by the emulated hardware (translation, permission, DMA)."""


class TranslationFault(HardwareFault):
    """An address has no mapping in the table that was walked."""


class PermissionFault(HardwareFault):
    """A mapping exists but does not allow the access."""


class DMAFault(HardwareFault):
    """A DMA master touched a frame its stream's view does not allow."""


class SMCError(FlexServeError):
    """An SMC call was refused; carries the monitor's return code."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message or f"SMC refused with code {code}")
        self.code = code


class OutOfMemoryError(FlexServeError):
    """The emulated normal world cannot satisfy an allocation."""


class SecurityError(FlexServeError):
    """An integrity or authenticity check failed. Deliberately carries no detail."""

    def __init__(self) -> None:
        super().__init__("security check failed")
