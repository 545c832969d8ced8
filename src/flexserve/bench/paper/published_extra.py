"""Paper values the figures compare against that :mod:`flexserve.bench.published` lacks.

Validation targets only: never model inputs (DESIGN.md section 3), except where a note says a
value is also a calibration input (Figure 1's allocation times set the profile's per-page
costs, so comparing with them checks the arithmetic, not the model).
"""

from __future__ import annotations

from flexserve.bench.published import Published

FLEXSERVE_ABLATION = "FlexServe (arXiv 2603.09046) abstract/ablation via FLEXSERVE.md"
FLEXSERVE_FIG1 = "FlexServe (arXiv 2603.09046) Fig. 1 via FLEXSERVE.md (secondary source)"

#: Figure 11: average TTFT reduction of each mechanism, in percent.
ABLATION_FLEX_NPU_REDUCTION_PCT = Published(49.01, "%", FLEXSERVE_ABLATION)
ABLATION_FLEX_MEM_REDUCTION_PCT = Published(37.89, "%", FLEXSERVE_ABLATION)
ABLATION_CACHING_REDUCTION_PCT = Published(36.59, "%", FLEXSERVE_ABLATION)

#: Figure 1: allocating 8 GB of secure memory (calibration inputs of the rk3588 profile).
ALLOC_8GB_FLEXMEM_MS = Published(568.0, "ms", FLEXSERVE_FIG1)
ALLOC_8GB_CMA_MS = Published(6441.0, "ms", FLEXSERVE_FIG1)

FLEXSERVE_AGENTS = "FlexServe (arXiv 2603.09046) abstract (agent workflows) via FLEXSERVE.md"

#: Figure 9: the largest agent-workflow speedups the paper reports.
AGENT_MAX_SPEEDUP_VS_STRAWMAN = Published(24.30, "x", FLEXSERVE_AGENTS)
AGENT_MAX_SPEEDUP_VS_STRAWMAN_OPT = Published(4.05, "x", FLEXSERVE_AGENTS)

#: Figure 10: the always-on stage-2 overhead on SQLite (an evaluation result, not an input).
STAGE2_SQLITE_OVERHEAD_PCT = Published(2.46, "%", "FlexServe (arXiv 2603.09046) Fig. 10 via "
                                                   "FLEXSERVE.md")
