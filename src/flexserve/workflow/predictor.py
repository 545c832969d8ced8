"""Predict the next model from invocation history, for workflows that are not declared.

The model is a first-order Markov chain over model names. ``count[prev][next]`` counts how often
``next`` was invoked right after ``prev``; the prediction after ``prev`` is the additively
smoothed row::

    P(next | prev) = (count[prev][next] + alpha) / (sum(count[prev]) + alpha * K)

over the K models seen so far. When ``prev`` has never been followed by anything (it is new, or
only ever came last) the prediction falls back to overall invocation frequency, smoothed the
same way. With a half-life of H invocations every count is multiplied by ``0.5 ** (1 / H)`` at
each invocation, so behaviour H invocations old weighs half as much as the newest.

Everything is deterministic: equal probabilities are ordered by model name.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from flexserve.errors import ConfigError

DEFAULT_SMOOTHING = 1.0
DEFAULT_HISTORY_LIMIT = 4096
# The cache policy gives budget to models invoked in more than this share of recent calls.
CACHE_RATE_THRESHOLD = 0.25


def _positive(name: str, value: float | None, *, integer: bool = False) -> None:
    if value is None:
        return
    bad_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad_type or value <= 0:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name} must be {kind} > 0, got {value!r}")


class NextModelPredictor:
    """First-order, smoothed, optionally decaying next-model predictor."""

    def __init__(self, smoothing: float = DEFAULT_SMOOTHING,
                 half_life_invocations: float | None = None,
                 history_limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) \
                or smoothing < 0:
            raise ConfigError(f"smoothing must be a number >= 0, got {smoothing!r}")
        _positive("half_life_invocations", half_life_invocations)
        _positive("history_limit", history_limit, integer=True)
        self.smoothing = float(smoothing)
        self.half_life_invocations = half_life_invocations
        self._decay = 1.0 if half_life_invocations is None else 0.5 ** (1 / half_life_invocations)
        self._transitions: dict[str, dict[str, float]] = {}
        self._frequency: dict[str, float] = {}
        self._history: deque[str] = deque(maxlen=history_limit)
        self._last: str | None = None

    @property
    def known_models(self) -> tuple[str, ...]:
        """Every model observed so far, by name."""
        return tuple(sorted(self._frequency))

    @property
    def last_model(self) -> str | None:
        return self._last

    def observe(self, model: str) -> None:
        """Record that ``model`` was invoked (after the previously observed one)."""
        if not isinstance(model, str) or not model:
            raise ConfigError(f"model must be a non-empty string, got {model!r}")
        self._age()
        self._frequency[model] = self._frequency.get(model, 0.0) + 1.0
        if self._last is not None:
            row = self._transitions.setdefault(self._last, {})
            row[model] = row.get(model, 0.0) + 1.0
        self._history.append(model)
        self._last = model

    def observe_all(self, models: Iterable[str]) -> None:
        for model in models:
            self.observe(model)

    def _age(self) -> None:
        if self._decay == 1.0:
            return
        for counts in (self._frequency, *self._transitions.values()):
            for name in counts:
                counts[name] *= self._decay

    def distribution(self, after: str | None = None) -> dict[str, float]:
        """P(next model) over every known model, after ``after`` (default: the last observed)."""
        models = self.known_models
        if not models:
            return {}
        prev = self._last if after is None else after
        row = self._transitions.get(prev, {}) if prev is not None else {}
        counts = row if sum(row.values()) > 0 else self._frequency
        weights = {m: counts.get(m, 0.0) + self.smoothing for m in models}
        total = sum(weights.values())
        if total <= 0:  # smoothing 0 and every count decayed to nothing: uniform
            return {m: 1.0 / len(models) for m in models}
        return {m: w / total for m, w in weights.items()}

    def predict(self, top_k: int | None = None, after: str | None = None
                ) -> list[tuple[str, float]]:
        """The most likely next models, most likely first; ties by name. [] before any call.

        The full list (``top_k=None``) covers every known model and sums to 1.
        """
        _positive("top_k", top_k, integer=True)
        ranked = sorted(self.distribution(after).items(), key=lambda item: (-item[1], item[0]))
        return ranked if top_k is None else ranked[:top_k]

    def invocation_rates(self, window: int) -> dict[str, float]:
        """Each known model's share of the last ``window`` invocations (fewer if fewer made)."""
        _positive("window", window, integer=True)
        if window > self._history.maxlen:  # type: ignore[operator]
            raise ConfigError(f"window {window} exceeds the history limit "
                              f"{self._history.maxlen}")
        recent = list(self._history)[-window:]
        counts = Counter(recent)
        return {m: counts[m] / len(recent) if recent else 0.0 for m in self.known_models}

    def frequent_models(self, window: int, threshold: float = CACHE_RATE_THRESHOLD
                        ) -> list[str]:
        """Models whose recent invocation rate exceeds ``threshold``, most frequent first."""
        rates = self.invocation_rates(window)
        above = [(rate, m) for m, rate in rates.items() if rate > threshold]
        return [m for _, m in sorted(above, key=lambda item: (-item[0], item[1]))]
