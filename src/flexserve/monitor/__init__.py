"""The Flex-Monitor (EL2 + EL3 firmware): SMC dispatch, Flex-Mem, Flex-NPU, on-demand
protection, and the secure-world port the trusted OS uses.

Entry point: :func:`boot_platform` builds the hardware and boots the firmware, returning a
:class:`Platform` whose ``normal`` is the normal world's entire API surface and whose
``secure.port`` is the trusted OS's. See docs/smc-abi.md and docs/threat-model.md.
"""

from flexserve.monitor.core import MonitorConfig
from flexserve.monitor.platform import NormalWorld, Platform, SecureWorld, boot_platform
from flexserve.monitor.secure_port import FlexBuffer, SecureWorldPort
from flexserve.monitor.smc_ids import FunctionId
from flexserve.monitor.status import SmcResult, SmcStatus

__all__ = [
    "FlexBuffer",
    "FunctionId",
    "MonitorConfig",
    "NormalWorld",
    "Platform",
    "SecureWorld",
    "SecureWorldPort",
    "SmcResult",
    "SmcStatus",
    "boot_platform",
]
