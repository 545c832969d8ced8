"""The SMMU context of the NPU in secure mode: the Flex-Mem frames of one owner.

IOVA == PA. A page is reachable only while the ledger says it is Flex-Mem of ``owner``,
so protect/release are reflected immediately and nothing else (normal memory, TEE
memory, the EL2 region, other owners' frames) is ever reachable.
"""

from __future__ import annotations

import numpy as np

from flexserve.errors import TranslationFault
from flexserve.monitor.ledger import FLEX_STATES, FrameLedger
from flexserve.soc.access import Access
from flexserve.soc.constants import pages_spanned


class FlexMemDmaView:
    def __init__(self, ledger: FrameLedger, owner: int) -> None:
        self.ledger = ledger
        self.owner = owner

    def translate_range(self, iova: int, size_bytes: int, access: Access) -> np.ndarray:
        if iova < 0:
            raise TranslationFault("secure view: negative address")
        first_page, page_count = pages_spanned(iova, size_bytes)
        if first_page + page_count > self.ledger.frame_count:
            raise TranslationFault("secure view: outside DRAM")
        pages = np.arange(first_page, first_page + page_count, dtype=np.int64)
        if not self.ledger.owned_by(pages, self.owner, *FLEX_STATES):
            raise TranslationFault("secure view: frame not owned by the NPU's owner")
        return pages
