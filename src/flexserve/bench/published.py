"""Figures the papers report, set beside ours for validation only (never model inputs).

DESIGN.md section 3: end-to-end results are outputs. These values are read only by the
benchmark reports, which print each of our figures next to the published one with the ratio.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Published:
    value: float
    unit: str
    source: str


FLEXSERVE_ABSTRACT = "FlexServe (Wu et al., arXiv 2603.09046), abstract"
TZLLM_FIG1 = ("TZ-LLM (Wang et al., EuroSys '26, arXiv 2511.13717) Fig. 1: strawman cold start "
              "of Llama-3-8B Q8_0 in the TEE, 512-token prompt, RK3588")

#: Average TTFT speedup of FlexServe over the two TrustZone baselines.
TTFT_SPEEDUP_VS_STRAWMAN = Published(10.05, "x", FLEXSERVE_ABSTRACT)
TTFT_SPEEDUP_VS_STRAWMAN_OPT = Published(2.44, "x", FLEXSERVE_ABSTRACT)

#: TZ-LLM's per-component cold start (seconds) by our TTFT categories. ``alloc`` is the CMA
#: allocation of the parameters (4182 ms) plus the KV-cache/activation allocations (137.1 ms);
#: ``init`` is boot + metadata + init + tokenizer (59.38 + 447.1 + 1799 + 32.89 ms).
TZLLM_STRAWMAN_PROMPT_TOKENS = 512
TZLLM_STRAWMAN_BREAKDOWN_S: dict[str, Published] = {
    "alloc": Published(4.182 + 0.1371, "s", TZLLM_FIG1),
    "io": Published(4.054, "s", TZLLM_FIG1),
    "decrypt": Published(0.8919, "s", TZLLM_FIG1),
    "init": Published(0.05938 + 0.4471 + 1.799 + 0.03289, "s", TZLLM_FIG1),
    "compute": Published(164.558, "s", TZLLM_FIG1),
}
