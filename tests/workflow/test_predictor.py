"""Next-model predictor: a proper distribution, learns cycles, falls back, decays, rates."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flexserve.errors import ConfigError
from flexserve.workflow.predictor import NextModelPredictor

MODELS = ["qwen3-0.6b", "qwen3-1.7b", "llama3.2-3b", "llama3.1-8b"]
histories = st.lists(st.sampled_from(MODELS), max_size=60)
smoothings = st.floats(0.0, 5.0)
half_lives = st.one_of(st.none(), st.floats(0.5, 100.0))


def trained(history, smoothing=1.0, half_life=None) -> NextModelPredictor:
    predictor = NextModelPredictor(smoothing, half_life)
    predictor.observe_all(history)
    return predictor


@given(histories, smoothings, half_lives)
def test_prediction_is_a_distribution(history, smoothing, half_life):
    predictor = trained(history, smoothing, half_life)
    ranked = predictor.predict()
    assert {m for m, _ in ranked} == set(history)
    assert all(0.0 <= p <= 1.0 for _, p in ranked)
    if history:
        assert math.isclose(sum(p for _, p in ranked), 1.0)
    probabilities = [p for _, p in ranked]
    assert probabilities == sorted(probabilities, reverse=True)


@given(histories, st.integers(1, 5))
def test_top_k_is_a_prefix_of_the_ranking(history, top_k):
    predictor = trained(history)
    assert predictor.predict(top_k) == predictor.predict()[:top_k]


@given(histories, half_lives)
def test_deterministic(history, half_life):
    assert trained(history, 1.0, half_life).predict() == trained(history, 1.0, half_life).predict()


def test_ties_are_broken_by_name():
    predictor = trained(["b", "c", "a"])  # c -> a and b -> c seen; after a: nothing, so overall
    assert predictor.predict() == [("a", 1 / 3), ("b", 1 / 3), ("c", 1 / 3)]


@given(st.integers(2, 30), st.floats(0.01, 2.0))
def test_learns_a_deterministic_cycle(repeats, smoothing):
    predictor = trained(["A", "B"] * repeats + ["A"], smoothing)
    best, probability = predictor.predict(top_k=1)[0]
    assert best == "B"
    # repeats A->B transitions, smoothing spread over 2 models.
    assert probability == pytest.approx((repeats + smoothing) / (repeats + 2 * smoothing))
    assert predictor.predict(after="B", top_k=1)[0][0] == "A"


def test_cycle_probability_is_high_after_a_few_rounds():
    predictor = trained(["A", "B"] * 10 + ["A"])
    assert predictor.predict()[0] == ("B", pytest.approx(11 / 12))


def test_unseen_previous_model_falls_back_to_overall_frequency():
    predictor = trained(["A", "A", "A", "B", "C"])  # C has never been followed by anything
    assert predictor.last_model == "C"
    assert predictor.predict() == [("A", 4 / 8), ("B", 2 / 8), ("C", 2 / 8)]
    assert predictor.predict(after="unknown") == predictor.predict()


def test_transitions_are_used_when_present():
    predictor = trained(["A", "C", "A", "C", "B", "B", "B", "A"])
    # After A: C twice, smoothing 1 over {A, B, C}.
    assert predictor.predict() == [("C", 3 / 5), ("A", 1 / 5), ("B", 1 / 5)]


@given(st.integers(20, 60))
def test_decay_makes_recent_behaviour_dominate(old_rounds):
    # Long ago A was followed by B; recently A is followed by C, for fewer rounds.
    history = ["A", "B"] * old_rounds + ["A", "C"] * 8 + ["A"]
    assert trained(history).predict(top_k=1)[0][0] == "B"
    assert trained(history, half_life=4.0).predict(top_k=1)[0][0] == "C"


def test_decay_halves_weight_every_half_life():
    predictor = trained(["A", "B"], smoothing=0.0, half_life=1.0)
    # A counts 1 then halves once when B is observed: A 0.5, B 1.
    assert predictor.predict(after="B") == [("B", pytest.approx(2 / 3)),
                                            ("A", pytest.approx(1 / 3))]


def test_empty_predictor():
    predictor = NextModelPredictor()
    assert predictor.predict() == []
    assert predictor.known_models == ()
    assert predictor.invocation_rates(10) == {}
    assert predictor.last_model is None


def test_invocation_rates_over_a_window():
    predictor = trained(["A"] * 6 + ["B", "C", "B", "D"])
    assert predictor.invocation_rates(4) == {"A": 0.0, "B": 0.5, "C": 0.25, "D": 0.25}
    assert predictor.invocation_rates(100) == {"A": 0.6, "B": 0.2, "C": 0.1, "D": 0.1}
    assert predictor.frequent_models(4) == ["B"]
    assert predictor.frequent_models(100) == ["A"]
    assert predictor.frequent_models(10, threshold=0.1) == ["A", "B"]


@given(histories, st.integers(1, 80))
def test_invocation_rates_sum_to_one(history, window):
    rates = trained(history).invocation_rates(window)
    assert set(rates) == set(history)
    if history:
        assert math.isclose(sum(rates.values()), 1.0)
        recent = history[-window:]
        assert all(rates[m] == recent.count(m) / len(recent) for m in rates)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smoothing": -1}, "smoothing must be a number >= 0"),
        ({"smoothing": "1"}, "smoothing must be a number >= 0"),
        ({"half_life_invocations": 0}, "half_life_invocations must be a number > 0"),
        ({"history_limit": 0}, "history_limit must be an integer > 0"),
        ({"history_limit": 2.5}, "history_limit must be an integer > 0"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        NextModelPredictor(**kwargs)


def test_bad_arguments():
    predictor = NextModelPredictor(history_limit=8)
    with pytest.raises(ConfigError, match="model must be a non-empty string"):
        predictor.observe("")
    with pytest.raises(ConfigError, match="top_k must be an integer > 0"):
        predictor.predict(top_k=0)
    with pytest.raises(ConfigError, match="window must be an integer > 0"):
        predictor.invocation_rates(0)
    with pytest.raises(ConfigError, match="exceeds the history limit 8"):
        predictor.invocation_rates(9)
