"""Greedy decoding agrees with llama.cpp (optional: needs the ``llamacpp`` extra).

llama.cpp multiplies with quantized activations (Q8), so its logits differ from the float32
reference by more than ours do, and greedy paths split at the first near-tie. Measured: the
chat prompts agree on all 24 tokens, the plain-text prompts on 17 (SmolLM2) and 11 (Gemma 3);
at each split our token is the one transformers' float32 model picks (test_real_models).
So this checks agreement up to a near-tie: at least the first 8 tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flexserve.engine.generate import GreedyStepper
from flexserve.engine.loader import load_model

llama_cpp = pytest.importorskip("llama_cpp")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

GREEDY_TOKENS = 24
MIN_AGREEING_TOKENS = 8
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


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_greedy_tokens_match_llamacpp(model: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(f"{model}_path")
    loaded = load_model(path)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    for prompt in PROMPTS[model]:
        ids = loaded.tokenizer.encode(prompt)
        stepper = GreedyStepper(loaded.transformer, 256)
        ours = [stepper.prefill(ids)]
        while len(ours) < GREEDY_TOKENS:
            ours.append(stepper.step(ours[-1]))
        theirs = llamacpp_greedy(llm, ids, GREEDY_TOKENS)
        pairs = enumerate(zip(ours, theirs, strict=True))
        agree = next((i for i, (a, b) in pairs if a != b), len(ours))
        assert agree >= MIN_AGREEING_TOKENS, (prompt, ours, theirs)
