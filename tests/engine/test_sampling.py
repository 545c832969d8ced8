"""Sampling parameters are validated; sampling is deterministic per seed and filters work."""

from __future__ import annotations

import math

import pytest
import torch

from flexserve.engine.sampling import (
    Sampler,
    SamplingParams,
    apply_repetition_penalty,
    filter_min_p,
    filter_top_k,
    filter_top_p,
)
from flexserve.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("temperature", -0.1, "temperature"), ("temperature", math.nan, "temperature"),
        ("top_k", -1, "top_k"), ("top_k", 2.5, "top_k"), ("top_p", 0.0, "top_p"),
        ("top_p", 1.5, "top_p"), ("min_p", 1.0, "min_p"), ("repetition_penalty", 0.0, "penalty"),
        ("seed", -1, "seed"), ("seed", 2**64, "seed"), ("max_tokens", 0, "max_tokens"),
        ("max_tokens", True, "max_tokens"), ("stop", ("",), "stop"), ("stop", "END", "stop"),
        ("stop", ("x",) * 17, "stop"),
    ],
)
def test_invalid_values_raise_config_error(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SamplingParams(**{field: value})


def test_defaults_and_list_stops() -> None:
    params = SamplingParams(stop=["a", "b"])  # type: ignore[arg-type]
    assert params.stop == ("a", "b") and params.greedy and params.max_tokens == 128


def test_greedy_is_argmax_and_ignores_the_seed() -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert Sampler(SamplingParams(seed=1)).sample(logits) == 1
    assert Sampler(SamplingParams(seed=2)).sample(logits) == 1


def draws(seed: int | None, n: int = 40) -> list[int]:
    sampler = Sampler(SamplingParams(temperature=1.0, seed=seed))
    logits = torch.zeros(50)
    return [sampler.sample(logits) for _ in range(n)]


def test_same_seed_same_tokens_different_seed_different_tokens() -> None:
    assert draws(7) == draws(7)
    assert draws(7) != draws(8)
    assert len(set(draws(7))) > 10  # really random over the uniform distribution


def test_unseeded_sampler_records_its_seed() -> None:
    sampler = Sampler(SamplingParams(temperature=1.0))
    assert draws(sampler.seed) == [sampler.sample(torch.zeros(50)) for _ in range(40)]


def test_filters() -> None:
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(filter_top_k(logits, 2)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_top_p(logits, 0.8)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_top_p(logits, 0.81)).tolist() == [False, False, False, True]
    assert torch.isinf(filter_top_p(logits, 0.1)).tolist() == [False, True, True, True]
    assert torch.isinf(filter_min_p(logits, 0.5)).tolist() == [False, False, True, True]


def test_filters_restrict_what_is_sampled() -> None:
    logits = torch.tensor([2.0, 1.9, 1.8, 1.7, 1.6])
    sampler = Sampler(SamplingParams(temperature=5.0, top_k=2, seed=0))
    assert {sampler.sample(logits) for _ in range(100)} == {0, 1}


def test_repetition_penalty() -> None:
    logits = torch.tensor([2.0, -2.0, 1.0])
    penalized = apply_repetition_penalty(logits, [0, 1, 1], 2.0)
    assert penalized.tolist() == [1.0, -4.0, 1.0]
    assert logits.tolist() == [2.0, -2.0, 1.0]  # the input is not modified
    assert Sampler(SamplingParams(repetition_penalty=3.0)).sample(logits, [0]) == 2


@pytest.mark.parametrize(("temperature", "top_p"), [(1e-300, 1.0), (5e-324, 1.0), (1.0, 1e-300),
                                                    (1e-300, 1e-300)])
def test_extreme_values_reach_their_greedy_limit_without_nan(temperature: float,
                                                             top_p: float) -> None:
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0, 40.0, -60.0])
    sampler = Sampler(SamplingParams(temperature=temperature, top_p=top_p, seed=3))
    assert {sampler.sample(logits) for _ in range(20)} == {4}


def test_tiny_top_p_keeps_the_most_likely_token() -> None:
    logits = torch.log(torch.tensor([0.05, 0.5, 0.3, 0.15]))
    assert torch.isinf(filter_top_p(logits, 1e-300)).tolist() == [True, False, True, True]
