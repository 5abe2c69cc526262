import pytest
import torch

from pdlightning.callbacks.retrieval import (
    format_listing,
    least_squares_scores,
    matching_trials,
    ranked_listing,
    retrieval_accuracy,
)


def test_trials_hold_the_partner_and_distinct_others():
    trials = matching_trials(30, 5, seed=1)
    assert trials.shape == (30, 5)
    assert torch.equal(trials[:, 0], torch.arange(30))
    for row in trials:
        assert len(set(row.tolist())) == 5 and row.min() >= 0 and row.max() < 30
    assert torch.equal(trials, matching_trials(30, 5, seed=1))
    assert not torch.equal(trials, matching_trials(30, 5, seed=2))
    with pytest.raises(ValueError, match="num_candidates"):
        matching_trials(3, 5)


def test_accuracy_oracle_constant_and_random_scores():
    n = 2000
    trials = matching_trials(n, 5, seed=0)
    assert retrieval_accuracy(torch.eye(n), trials) == 1.0
    assert retrieval_accuracy(torch.zeros(n, n), trials) == 0.0  # ties are failures
    assert retrieval_accuracy(-torch.eye(n), trials) == 0.0
    random = retrieval_accuracy(torch.randn(n, n, generator=torch.Generator().manual_seed(0)), trials)
    assert abs(random - 0.2) < 0.04


def test_listing_ranks_candidates_and_splits_success_from_failure():
    n = 40
    scores = torch.randn(n, n, generator=torch.Generator().manual_seed(0)) + 2 * torch.eye(n)
    trials = matching_trials(n, 5, seed=0)
    names = [f"item{i}" for i in range(n)]
    entries = ranked_listing(scores, trials, names, num_success=2, num_failure=2)
    assert [e["correct"] for e in entries] == [True, True, False, False]
    for entry in entries:
        pmis = [p for _, p, _ in entry["ranked"]]
        assert pmis == sorted(pmis, reverse=True)
        partner_first = entry["ranked"][0][2]
        assert partner_first == entry["correct"]
        assert sum(is_partner for _, _, is_partner in entry["ranked"]) == 1
    text = format_listing(entries, 0.5)
    assert "Top-1 accuracy: 50.00%" in text and "*item" in text


def test_least_squares_baseline_recovers_a_linear_map():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 4, generator=generator)
    x_train, x_test = torch.randn(300, 6, generator=generator), torch.randn(50, 6, generator=generator)
    noise = 0.01 * torch.randn(50, 4, generator=generator)
    scores = least_squares_scores(x_train, x_train @ weight, x_test, x_test @ weight + noise)
    assert retrieval_accuracy(scores, matching_trials(50, 5)) == 1.0
