"""Stop strings are never emitted, even when they arrive split across tokens."""

from __future__ import annotations

from flexserve.engine.stops import StopStringFilter


def feed(stops: tuple[str, ...], deltas: list[str]) -> tuple[list[str], bool, str]:
    f = StopStringFilter(stops)
    shown = []
    for delta in deltas:
        result = f.push(delta)
        shown.append(result.text)
        if result.stopped:
            return shown, True, ""
    return shown, False, f.flush()


def test_stop_inside_one_delta() -> None:
    assert feed(("END",), ["abcENDxyz"]) == (["abc"], True, "")


def test_stop_split_across_deltas_is_held_back() -> None:
    assert feed(("END",), ["ab", "cE", "N", "Dz"]) == (["ab", "c", "", ""], True, "")


def test_false_alarm_is_released() -> None:
    assert feed(("END",), ["aE", "N", "x"]) == (["a", "", "ENx"], False, "")


def test_held_back_prefix_is_flushed_at_the_end() -> None:
    assert feed(("END",), ["ok E"]) == (["ok "], False, "E")


def test_earliest_of_several_stops_wins() -> None:
    assert feed(("world", "lo"), ["hello world"]) == (["hel"], True, "")
    assert feed(("\n\n", "User:"), ["a\n", "\nUser:"]) == (["a", ""], True, "")


def test_no_stops_passes_everything() -> None:
    assert feed((), ["a", "b"]) == (["a", "b"], False, "")
