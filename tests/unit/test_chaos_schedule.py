"""The chaos run's fault schedule: drawn from the seed alone, so a failing run can be replayed."""

from __future__ import annotations

import itertools

from load.chaos import FAULTS, SERVICES, schedule


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    chains = ("arbitrum", "polygon")
    assert schedule(7, 300, chains) == schedule(7, 300, chains)
    assert schedule(7, 300, chains) != schedule(8, 300, chains)


def test_a_long_schedule_has_every_kind_of_fault_one_at_a_time_within_the_run() -> None:
    faults = schedule(1, 600, ("arbitrum", "polygon"))
    assert {f.kind for f in faults} == set(FAULTS)
    assert all(0 < f.at < 600 for f in faults)
    for before, after in itertools.pairwise(faults):
        assert after.at >= before.at + before.hold + 1.5  # the next starts after the last is over
    for f in faults:
        if f.kind in ("kill", "stop"):
            assert f.target in SERVICES
        elif f.kind == "reorg":
            assert f.target in ("arbitrum", "polygon") and 1 <= f.hold <= 4
        else:
            assert f.target == "ipfs"
