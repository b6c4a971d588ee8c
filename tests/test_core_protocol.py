import dataclasses

import pytest

from benchmark.protocol import Protocol, resolve_horizons


def test_hash_is_stable_and_sensitive():
    a, b = Protocol(64, 96), Protocol(64, 96)
    assert a.hash == b.hash
    assert a.hash != Protocol(96, 64).hash
    assert a.hash != a.replace(carry_over=5).hash
    assert a.hash != dataclasses.replace(a, sampling_steps=10).hash
    assert Protocol.from_dict(a.to_dict()) == a


def test_defaults_follow_the_paper():
    p = Protocol(832, 480)
    assert (p.fps, p.chunk_frames, p.sampling_steps) == (25, 77, 20)
    assert p.horizons_s == (10, 30, 60, 90)
    assert p.carry_over == 0
    assert p.horizon_frames(90) == 2250


@pytest.mark.parametrize("carry", [0, 1, 4, 5])
def test_chunks_cover_the_horizon_exactly(carry):
    p = Protocol(64, 96)
    for frames in (1, 76, 77, 78, 250, 2250):
        starts = p.chunk_starts(frames, carry)
        assert starts[0] == 0
        assert all(b - a == 77 - carry for a, b in zip(starts, starts[1:]))
        assert starts[-1] + 77 >= frames
        assert len(starts) == 1 or starts[-2] + 77 < frames


def test_ninety_seconds_needs_31_chunks_with_four_overlap():
    assert len(Protocol(64, 96).chunk_starts(2250, 4)) == 31
    assert len(Protocol(64, 96, carry_over=4).chunk_starts(2250)) == 31


def test_seed_depends_on_clip_and_chunk_only():
    p = Protocol(64, 96)
    assert p.chunk_seed("clip", 3) == Protocol(832, 480).chunk_seed("clip", 3)
    assert p.chunk_seed("clip", 3) != p.chunk_seed("clip", 4)
    assert p.chunk_seed("clip", 3) != p.chunk_seed("clip2", 3)
    assert 0 <= p.chunk_seed("x", 0) < 2**63


def test_bad_protocols_and_horizons_are_refused():
    with pytest.raises(ValueError):
        Protocol(0, 96)
    with pytest.raises(ValueError):
        Protocol(64, 96, carry_over=77)
    with pytest.raises(ValueError):
        Protocol(64, 96, sampling_steps=0)
    p = Protocol(64, 96)
    assert resolve_horizons([90, 10, 10], p, 90.0) == (10.0, 90.0)
    assert resolve_horizons(None, p, 95.0) == (10, 30, 60, 90)
    with pytest.raises(ValueError, match="exceeds the shortest clip"):
        resolve_horizons([91], p, 90.0)
    with pytest.raises(ValueError, match="supports horizons up to 90 s"):
        resolve_horizons([91], p, 90.5)


@pytest.mark.parametrize("horizon", [0, -10, float("nan"), float("inf")])
def test_horizons_must_be_positive_and_finite(horizon):
    with pytest.raises(ValueError, match="positive, finite"):
        resolve_horizons([horizon], Protocol(64, 96), 90.0)


@pytest.mark.parametrize("horizon", [10.5, 0.01, 1.04])
def test_horizons_must_be_whole_drift_windows(horizon):
    with pytest.raises(ValueError, match="whole number of 1 s drift windows"):
        resolve_horizons([horizon], Protocol(64, 96), 90.0)
