"""Generation: finish reasons, stop tokens and strings, context limits, laziness, seeding."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from flexserve.engine.config import ModelConfig
from flexserve.engine.generate import GenerationEvent, Generator, GreedyStepper
from flexserve.engine.kv_cache import KVCache
from flexserve.engine.sampling import SamplingParams
from flexserve.errors import ConfigError, ContextOverflowError

EOS = 0
TEXTS = ["<eos>", "Hel", "lo", " EN", "D", "x", " world", "!", "é"]


@dataclass
class ScriptedModel:
    """Stands in for a Transformer: its greedy choice at step i is ``script[i]``."""

    script: list[int]
    config: ModelConfig = field(default_factory=lambda: ModelConfig(vocab_size=len(TEXTS),
                                                                    context_length=32))
    forwards: list[list[int]] = field(default_factory=list)

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(self.config, capacity)

    def forward(self, ids: list[int], cache: KVCache, last_only: bool = False) -> torch.Tensor:
        cache.check_room(len(ids))
        cache.commit(cache.length + len(ids))
        self.forwards.append(list(ids))
        logits = torch.zeros(1, self.config.vocab_size)
        logits[0, self.script[len(self.forwards) - 1]] = 1.0
        return logits


class ScriptedTokenizer:
    stop_token_ids = frozenset({EOS})

    def stream_decoder(self):
        return self

    def push(self, token_id: int) -> str:
        return TEXTS[token_id]

    def finish(self) -> str:
        return ""


def run(script: list[int], **params) -> tuple[list[GenerationEvent], ScriptedModel]:
    model = ScriptedModel(script)
    events = list(Generator(model, ScriptedTokenizer()).stream([5, 6], SamplingParams(**params)))
    return events, model


def test_length_finish() -> None:
    events, model = run([1, 2, 6, 7, 7], max_tokens=3)
    assert [e.token_id for e in events] == [1, 2, 6, None]
    assert "".join(e.text for e in events) == "Hello world"
    assert events[-1].finish_reason == "length" and events[-1].n_generated_tokens == 3
    assert all(e.finish_reason is None for e in events[:-1])
    assert model.forwards == [[5, 6], [1], [2]]  # prefill, then one token per step


def test_stop_token_finish_is_not_emitted() -> None:
    events, _ = run([1, 2, EOS, 7], max_tokens=10)
    assert [e.token_id for e in events] == [1, 2, None]
    assert events[-1].finish_reason == "stop" and events[-1].text == ""
    assert events[-1].n_generated_tokens == 3 and events[-1].n_prompt_tokens == 2


def test_stop_string_split_over_tokens_is_not_emitted() -> None:
    events, model = run([1, 2, 3, 4, 5, 7], max_tokens=10, stop=("END",))
    assert "".join(e.text for e in events) == "Hello "
    assert not any("E" in e.text for e in events)
    assert events[-1].finish_reason == "stop"
    assert len(model.forwards) == 4  # nothing is computed after the stop string completes


def test_generate_collects_the_stream() -> None:
    model = ScriptedModel([8, 1, EOS])
    result = Generator(model, ScriptedTokenizer()).generate([5], SamplingParams(max_tokens=9))
    assert (result.text, result.token_ids, result.finish_reason) == ("éHel", (8, 1), "stop")
    assert (result.n_prompt_tokens, result.n_generated_tokens) == (1, 3)


def test_context_overflow_is_refused_before_any_work() -> None:
    model = ScriptedModel([1] * 40)
    generator = Generator(model, ScriptedTokenizer())
    with pytest.raises(ContextOverflowError, match="context of 32"):
        generator.stream(list(range(30)), SamplingParams(max_tokens=3))
    with pytest.raises(ContextOverflowError):
        generator.stream([1] * 33, SamplingParams(max_tokens=1))
    with pytest.raises(ConfigError, match="no tokens"):
        generator.stream([], SamplingParams())
    assert model.forwards == []
    events = list(generator.stream(list(range(29)), SamplingParams(max_tokens=3)))
    assert events[-1].finish_reason == "length"  # exactly full is fine


def test_stream_is_lazy() -> None:
    model = ScriptedModel([1] * 10)
    stream = Generator(model, ScriptedTokenizer()).stream([5], SamplingParams(max_tokens=10))
    assert model.forwards == []
    next(stream)
    assert len(model.forwards) == 1


# ----- on the real SmolLM2 -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2(smollm2_path, one_torch_thread):
    from flexserve.engine.loader import load_model

    return load_model(smollm2_path)


CHAT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def test_real_chat_answer_stops_at_end_of_turn(smollm2) -> None:
    generator = Generator(smollm2.transformer, smollm2.tokenizer)
    result = generator.generate(smollm2.tokenizer.encode(CHAT), SamplingParams(max_tokens=40))
    assert "Paris" in result.text
    assert result.finish_reason == "stop" and result.n_generated_tokens < 40
    assert "<|im_end|>" not in result.text


def test_real_seeded_sampling_is_reproducible(smollm2) -> None:
    generator = Generator(smollm2.transformer, smollm2.tokenizer)
    prompt = smollm2.tokenizer.encode("Once upon a time")

    def sample(seed: int) -> tuple[int, ...]:
        params = SamplingParams(temperature=1.0, top_p=0.95, seed=seed, max_tokens=12)
        return generator.generate(prompt, params).token_ids

    assert sample(11) == sample(11)
    assert sample(11) != sample(12)


def test_real_stop_string(smollm2) -> None:
    generator = Generator(smollm2.transformer, smollm2.tokenizer)
    prompt = smollm2.tokenizer.encode(CHAT)
    free = generator.generate(prompt, SamplingParams(max_tokens=20)).text
    assert "capital" in free
    stopped = generator.generate(prompt, SamplingParams(max_tokens=20, stop=("capital",)))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free[: free.index("capital")]


def test_greedy_stepper_matches_generator(smollm2) -> None:
    prompt = smollm2.tokenizer.encode("The three primary colors are")
    stepper = GreedyStepper(smollm2.transformer, 64)
    tokens = [stepper.prefill(prompt)]
    for _ in range(7):
        tokens.append(stepper.step(tokens[-1]))
    generated = Generator(smollm2.transformer, smollm2.tokenizer).generate(
        prompt, SamplingParams(max_tokens=8))
    assert list(generated.token_ids) == tokens[: len(generated.token_ids)]
