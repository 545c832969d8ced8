"""Our logits agree with llama.cpp's greedy choices (optional: needs the ``llamacpp`` extra).

llama.cpp multiplies with 8-bit quantized activations, so its logits differ from the float32
reference by about as much as our int4 format's do (mean |diff| ~0.2 on SmolLM2), and free
greedy runs split for good at the first near-tie: "The history of the Roman Empire" splits
after 2 tokens on SmolLM2, where the two best logits are 0.05 apart. Comparing free-running
paths therefore measures where the first near-tie is, not whether the engines agree.

So the test teacher-forces llama.cpp's greedy continuation through our engine and checks every
step: llama.cpp's token must be our best or within ``MAX_GAP_LOGITS`` of it, and most steps
must agree exactly. Measured (24 steps, 4 prompts): at most 4 disagreements per prompt, all at
near-ties with gaps <= 0.125 logits (0.05 in float32); a wrong RoPE, norm or dequantization
puts llama.cpp's tokens whole logits below ours.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flexserve.engine.loader import load_model

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

GREEDY_TOKENS = 24
MAX_GAP_LOGITS = 0.5
MIN_EXACT_STEPS = 18
PROMPTS = {
    "smollm2": ["<|im_start|>user\nName three fruits.<|im_end|>\n<|im_start|>assistant\n",
                "The history of the Roman Empire"],
    "gemma3": ["<start_of_turn>user\nWrite one sentence about the sea.<end_of_turn>\n"
               "<start_of_turn>model\n", "The history of the Roman Empire"],
}


def llamacpp_greedy(llm, ids: list[int], n_tokens: int) -> list[int]:
    llm.reset()
    llm.eval(ids)
    out: list[int] = []
    for _ in range(n_tokens):
        out.append(int(llm.sample(temp=0.0)))
        llm.eval([out[-1]])
    return out


def gaps_at(logits: torch.Tensor, chosen: list[int]) -> torch.Tensor:
    """Per step, how far below our best logit the chosen token's logit is (0 if it is ours)."""
    picked = logits.gather(1, torch.tensor(chosen)[:, None])[:, 0]
    return logits.max(dim=-1).values - picked


@pytest.mark.parametrize("weight_format", ["float32", "int4"])
@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_llamacpp_greedy_tokens_are_our_best_up_to_near_ties(
    model: str, weight_format: str, request: pytest.FixtureRequest
) -> None:
    path: Path = request.getfixturevalue(f"{model}_path")
    loaded = load_model(path, weight_format=weight_format)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    for prompt in PROMPTS[model]:
        ids = loaded.tokenizer.encode(prompt)
        theirs = llamacpp_greedy(llm, ids, GREEDY_TOKENS)
        cache = loaded.transformer.new_cache(len(ids) + GREEDY_TOKENS)
        logits = loaded.transformer.forward(ids + theirs[:-1], cache)[-GREEDY_TOKENS:]
        gaps = gaps_at(logits, theirs)
        assert gaps.max().item() < MAX_GAP_LOGITS, (prompt, gaps.tolist())
        assert int((gaps == 0).sum()) >= MIN_EXACT_STEPS, (prompt, gaps.tolist())
