"""From an accepted false-hit rate to a threshold, with an error bound."""

from __future__ import annotations

import random

from threadline.rag.cache.calibration import (
    NEVER,
    Calibration,
    Calibrations,
    ScoredQuery,
    duplicate_groups,
    wilson_upper,
)
from threadline.rag.cache.judging import Asked, Judge, Verdict, at_threshold


def _run(n: int = 4000) -> list[ScoredQuery]:
    rng = random.Random(3)
    out = []
    for _ in range(n):
        score = rng.random()
        out.append(ScoredQuery(score, rng.random() < score**2, True))  # right more often high
    return out


def test_thresholds_rise_as_the_accepted_rate_falls_and_hold_on_new_data() -> None:
    calibration = Calibration.fit(_run())
    rates = [0.4, 0.3, 0.2, 0.1]
    thresholds = [calibration.threshold(r) for r in rates]
    assert thresholds == sorted(thresholds) and len(set(thresholds)) == 4
    fresh = _run(20000)
    for rate, t in zip(rates, thresholds, strict=True):
        hits = [q for q in fresh if q.score >= t]
        assert sum(not q.right for q in hits) / len(hits) <= rate


def test_no_threshold_when_the_rate_cannot_be_met() -> None:
    run = [ScoredQuery(0.9, False, True)] * 50 + [ScoredQuery(0.5, True, True)] * 50
    assert Calibration.fit(run).threshold(0.05) == NEVER
    assert Calibration.from_json(Calibration.fit(run).to_json()).threshold(0.05) == NEVER


def test_wilson_upper_bound() -> None:
    assert wilson_upper(0, 0) == 1.0
    assert 0.05 < wilson_upper(5, 100) < 0.11
    assert wilson_upper(50, 1000) < wilson_upper(5, 100)


def test_duplicates_are_read_through_chains_of_labels_and_never_across_a_non_duplicate() -> None:
    groups = duplicate_groups(
        [
            ("how do i learn python", "best way to learn python", True),
            ("best way to learn python", "how can i learn python", True),
            ("how do i learn python", "how do i learn java", False),
            ("how do i learn java", "best way to learn java", True),
        ]
    )
    python = {groups[q] for q in ("how do i learn python", "best way to learn python")}
    assert python == {groups["how can i learn python"]}  # a~b, b~c: a~c
    assert groups["how do i learn java"] == groups["best way to learn java"]
    assert groups["how do i learn java"] != groups["how do i learn python"]


def test_the_strictest_of_several_calibrations_is_kept_and_old_artifacts_still_load() -> None:
    """A promise calibrated two ways (by question group, by pair) holds on the worse."""
    easy = Calibration.fit(_run())
    rng = random.Random(5)
    harder = Calibration.fit(
        [ScoredQuery(s, rng.random() < s**4, True) for s in (rng.random() for _ in range(4000))]
    )
    both = Calibrations({"by_group": easy, "by_pair": harder})
    for rate in (0.3, 0.2, 0.1):
        assert both.threshold(rate) == max(easy.threshold(rate), harder.threshold(rate))
        assert harder.threshold(rate) > easy.threshold(rate)
    again = Calibrations.from_json(both.to_json())
    assert again.threshold(0.2) == both.threshold(0.2)
    old = Calibrations.from_json(easy.to_json())  # one table, as artifacts held it
    assert old.threshold(0.2) == easy.threshold(0.2)


def test_a_served_question_is_judged_through_chains_of_labels_and_by_what_they_leave_out() -> None:
    judge = Judge(
        [
            ("How do I learn Python?", "What is the best way to learn Python?", True),
            ("What is the best way to learn Python?", "How can I learn Python?", True),
            ("How do I learn Python?", "How do I learn Java?", False),
        ]
    )
    asked = "How can I learn Python?"
    assert judge.verdict("how can i learn python", asked) == Verdict(True, True, False)
    assert judge.verdict("How do I learn Python?", asked) == Verdict(True, False, False)  # chain
    assert judge.verdict("How do I learn Java?", asked) == Verdict(False, False, True)
    assert judge.verdict("How do I learn Java?", "How do I learn Python?") == Verdict(
        False, False, False
    )  # labelled: not a duplicate
    assert judge.verdict("", asked) == Verdict(False, False, False)  # nothing served


def test_at_a_threshold_exact_repeats_always_hit_and_the_promise_is_checked() -> None:
    right, wrong = Verdict(True, True, False), Verdict(False, False, True)
    run = [Asked(1.0, True, right, True)] * 50 + [
        Asked(0.9, False, right, True),
        Asked(0.8, False, wrong, False),
        Asked(0.0, False, Verdict(False, False, False), True),
    ]
    never = at_threshold(run, 0.01, NEVER)
    assert (never["hits"], never["exact_hits"], never["false_hits"]) == (50, 50, 0)
    some = at_threshold(run, 0.05, 0.75)
    assert (some["hits"], some["false_hits"], some["false_hits_unlabelled"]) == (52, 1, 1)
    assert some["within_promise"] and some["hit_rate"] == round(51 / 52, 4)
    assert some["precision_judged"] == 1.0 and some["precision"] == round(51 / 52, 4)
    assert not at_threshold(run[:2] + run[-2:], 0.05, 0.75)["within_promise"]  # 1 of 3 false
