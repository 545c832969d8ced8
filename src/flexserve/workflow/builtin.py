"""Built-in agent workflows: three timing-only ones on the paper's models, one real one.

No agent trace of the paper survives, so every token count below is an **estimate** built from
parts, with the reasoning beside each part. Lengths of a user's request come from the shared
prompt sets, measured with the SmolLM2 tokenizer as a proxy (docs/workflows.md): OpenAssistant
first turns have mean 32 / p90 58 tokens, ShareGPT (the UltraChat stand-in) median 26.
A timing-only ``prompt_tokens`` counts everything the model prefills: instructions, inputs,
the outputs of earlier calls pasted in, and chat-template tokens. Prompt text in timing-only
calls is a readable sketch of the prompt, with ``{dep}`` marking where outputs flow in.

The real workflow's prompts are the exact text given to each model (encode with
``Tokenizer.encode_prompt``): SmolLM2 is an instruct model, so its prompt is ChatML written out;
Gemma 3 270M is a base model, so its prompt is plain text for it to continue.
"""

from __future__ import annotations

from pathlib import Path

from flexserve.errors import ConfigError
from flexserve.workflow.load import load_workflow
from flexserve.workflow.spec import LlmCall, Workflow

# --- shared parts (estimates) -------------------------------------------------------------
# A user's request: between the OA mean (32) and p90 (58) tokens measured on the prompt sets.
USER_REQUEST_TOKENS = 48
# Chat-template tokens of a system + user turn and the assistant header: ChatML (Qwen3) is
# about 5 per turn; Llama 3.1's headers plus its default date lines are about 25 in all.
TEMPLATE_TOKENS = 24

# --- (a) router -----------------------------------------------------------------------------
# A routing system prompt: about 8 categories with a one-line description each (~18 tokens)
# plus a line of instructions.
ROUTER_INSTRUCTIONS_TOKENS = 160
# A category label is 1-3 tokens plus end-of-turn; headroom for the empty <think></think>
# block Qwen3 emits under the /no_think switch (~4 tokens).
ROUTE_LABEL_TOKENS = 8
# The specialist system prompt the route selects for the answering model.
SPECIALIST_INSTRUCTIONS_TOKENS = 120
# A chat answer: a few paragraphs. ShareGPT replies are commonly reported to average ~300
# tokens (e.g. the vLLM paper; not measured here); a phone assistant answers shorter.
CHAT_ANSWER_TOKENS = 256

ROUTER = Workflow(
    name="router",
    description="qwen3-0.6b classifies the request; llama3.1-8b answers it with the routed "
                "specialist prompt",
    calls=(
        LlmCall("classify", "qwen3-0.6b", "[routing categories] [user request]",
                ROUTE_LABEL_TOKENS,
                prompt_tokens=ROUTER_INSTRUCTIONS_TOKENS + USER_REQUEST_TOKENS + TEMPLATE_TOKENS),
        LlmCall("answer", "llama3.1-8b", "[specialist prompt for {classify}] [user request]",
                CHAT_ANSWER_TOKENS, deps=("classify",),
                prompt_tokens=SPECIALIST_INSTRUCTIONS_TOKENS + USER_REQUEST_TOKENS
                + TEMPLATE_TOKENS),
    ),
)

# --- (b) plan, act, summarize ---------------------------------------------------------------
# Four tools described as JSON schemas (name, description, 2-3 typed parameters): ~90 each.
TOOL_SCHEMAS_TOKENS = 360
PLANNER_INSTRUCTIONS_TOKENS = 120
# A numbered three-step plan, ~30 tokens a step.
PLAN_TOKENS = 96
ACTOR_INSTRUCTIONS_TOKENS = 80
# One tool call as JSON ({"name": ..., "arguments": {...}}) with a short reason.
TOOL_CALL_TOKENS = 48
# A tool's observation (search snippets, calendar entries, API JSON) truncated by the agent.
TOOL_RESULT_TOKENS = 160
ACT_STEPS = 3
SUMMARIZER_INSTRUCTIONS_TOKENS = 60
# A short reply summarizing what was done: 3-5 sentences.
SUMMARY_TOKENS = 128

ACT_FIRST_PROMPT_TOKENS = (ACTOR_INSTRUCTIONS_TOKENS + TOOL_SCHEMAS_TOKENS + USER_REQUEST_TOKENS
                           + PLAN_TOKENS + TEMPLATE_TOKENS)
# Each step sees the previous step's whole prompt, its tool call and the tool's result, so
# consecutive act prompts share an exact prefix (a prefix KV cache can reuse it).
ACT_STEP_GROWTH_TOKENS = TOOL_CALL_TOKENS + TOOL_RESULT_TOKENS


def _act_step(step: int) -> LlmCall:
    deps = ("plan",) if step == 1 else (f"act_{step - 1}",)
    return LlmCall(
        f"act_{step}", "llama3.2-3b",
        f"[actor prompt] [tools] [request] [plan] [earlier steps] {{{deps[0]}}}",
        TOOL_CALL_TOKENS, deps=deps,
        prompt_tokens=ACT_FIRST_PROMPT_TOKENS + (step - 1) * ACT_STEP_GROWTH_TOKENS,
    )


PLAN_ACT_SUMMARIZE = Workflow(
    name="plan-act-summarize",
    description="qwen3-1.7b plans, llama3.2-3b runs three tool steps, qwen3-1.7b summarizes",
    calls=(
        LlmCall("plan", "qwen3-1.7b", "[planner prompt] [tools] [user request]", PLAN_TOKENS,
                prompt_tokens=PLANNER_INSTRUCTIONS_TOKENS + TOOL_SCHEMAS_TOKENS
                + USER_REQUEST_TOKENS + TEMPLATE_TOKENS),
        *(_act_step(step) for step in range(1, ACT_STEPS + 1)),
        LlmCall("summarize", "qwen3-1.7b",
                "[summarizer prompt] [request] {plan} {act_1} {act_2} {act_3} [tool results]",
                SUMMARY_TOKENS, deps=("plan", "act_1", "act_2", "act_3"),
                prompt_tokens=SUMMARIZER_INSTRUCTIONS_TOKENS + USER_REQUEST_TOKENS
                + PLAN_TOKENS + ACT_STEPS * ACT_STEP_GROWTH_TOKENS + TEMPLATE_TOKENS),
    ),
)

# --- (c) retrieval-augmented answer with a query rewrite ------------------------------------
REWRITE_INSTRUCTIONS_TOKENS = 80
# The conversation so far: one earlier user turn and a shortened assistant answer.
HISTORY_TOKENS = 200
# A standalone search query of 10-20 words.
REWRITTEN_QUERY_TOKENS = 24
# Retrieval is not an LLM call: its result is the context pasted into the answer prompt.
# Common RAG setups retrieve the top 3-5 chunks of 256-512 tokens; we take 4 x 256.
RETRIEVED_CHUNKS = 4
CHUNK_TOKENS = 256
ANSWER_INSTRUCTIONS_TOKENS = 60
# A grounded answer of one or two paragraphs with source references.
GROUNDED_ANSWER_TOKENS = 192

RAG_REWRITE = Workflow(
    name="rag-rewrite",
    description="qwen3-0.6b rewrites the query; retrieved chunks go into qwen3-8b's prompt",
    calls=(
        LlmCall("rewrite", "qwen3-0.6b", "[rewrite prompt] [history] [user request]",
                REWRITTEN_QUERY_TOKENS,
                prompt_tokens=REWRITE_INSTRUCTIONS_TOKENS + HISTORY_TOKENS
                + USER_REQUEST_TOKENS + TEMPLATE_TOKENS),
        LlmCall("answer", "qwen3-8b",
                "[answer prompt] [retrieved chunks for {rewrite}] [user request]",
                GROUNDED_ANSWER_TOKENS, deps=("rewrite",),
                prompt_tokens=ANSWER_INSTRUCTIONS_TOKENS + RETRIEVED_CHUNKS * CHUNK_TOKENS
                + REWRITTEN_QUERY_TOKENS + USER_REQUEST_TOKENS + TEMPLATE_TOKENS),
    ),
)

# --- (d) real text with the bundled models --------------------------------------------------
# SmolLM2's own default system prompt (from its GGUF chat template).
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
# Both outputs stay short so the whole workflow runs in seconds on the host engine.
QUIZ_QA_TOKENS = 48
QUIZ_FACT_TOKENS = 40


def chatml(user: str, system: str = SMOLLM2_SYSTEM) -> str:
    """A ChatML prompt (SmolLM2's chat format) ending at the assistant's turn."""
    return (f"<|im_start|>system\n{system}<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


QUIZ = Workflow(
    name="quiz",
    description="smollm2-135m writes a question and answer about the Moon; gemma3-270m (a base "
                "model) continues the page with a related fact",
    calls=(
        LlmCall("qa", "smollm2-135m",
                chatml("Write a quiz question about the Moon and its answer, in this form:\n"
                       "Q: <question>\nA: <answer in one sentence>"),
                QUIZ_QA_TOKENS),
        LlmCall("fact", "gemma3-270m",
                "From a children's science book, chapter 3: The Moon.\n\n{qa}\n\n"
                "Another fun fact about the Moon:",
                QUIZ_FACT_TOKENS, deps=("qa",)),
    ),
)

BUILTIN_WORKFLOWS: dict[str, Workflow] = {
    wf.name: wf for wf in (ROUTER, PLAN_ACT_SUMMARIZE, RAG_REWRITE, QUIZ)
}


def workflow(name_or_path: str | Path) -> Workflow:
    """A builtin workflow by name, or the workflow in a ``.toml`` file."""
    key = str(name_or_path)
    if key in BUILTIN_WORKFLOWS:
        return BUILTIN_WORKFLOWS[key]
    if Path(key).suffix == ".toml":
        return load_workflow(key)
    raise ConfigError(f"unknown workflow {key!r}; builtins: {', '.join(BUILTIN_WORKFLOWS)}, "
                      f"or a .toml file")
