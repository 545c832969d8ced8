"""SMC function identifiers of the Flex-Monitor (SMCCC layout, SiP service range).

Bit 31 = fast call, bit 30 = SMC64, bits 29:24 = owning entity 2 (SiP service),
bits 15:0 = function number. Groups: 0x00xx general, 0x01xx Flex-Mem, 0x02xx guest
stage-2 layout, 0x03xx Flex-NPU, 0x04xx on-demand protection. One yielding call in the
Trusted OS range (entity 50) is forwarded to the secure world. See docs/smc-abi.md.
"""

from __future__ import annotations

import enum

SMC64_FAST_SIP = 0xC200_0000
#: SMC32 yielding call owned by the Trusted OS (SMCCC owning entity 50).
SMC32_YIELD_TOS = 0x3200_0000


class FunctionId(enum.IntEnum):
    VERSION = SMC64_FAST_SIP | 0x0000
    FLEXMEM_PROTECT = SMC64_FAST_SIP | 0x0100
    FLEXMEM_RELEASE = SMC64_FAST_SIP | 0x0101
    FLEXMEM_QUERY = SMC64_FAST_SIP | 0x0102
    S2_MAP = SMC64_FAST_SIP | 0x0200
    S2_UNMAP = SMC64_FAST_SIP | 0x0201
    FLEXNPU_REGISTER_DRIVER = SMC64_FAST_SIP | 0x0300
    FLEXNPU_RECALL = SMC64_FAST_SIP | 0x0301
    FLEXNPU_STATUS = SMC64_FAST_SIP | 0x0302
    ODP_DISABLE_S2 = SMC64_FAST_SIP | 0x0400
    ODP_ENABLE_S2 = SMC64_FAST_SIP | 0x0401
    ODP_STATUS = SMC64_FAST_SIP | 0x0402
    # Forwarded to the trusted OS: x1 = physical address of a message in normal memory.
    TOS_CALL_WITH_ARG = SMC32_YIELD_TOS | 0x0004


#: ABI version returned by VERSION as (major, minor).
ABI_VERSION = (1, 0)
