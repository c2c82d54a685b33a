"""When a publishing channel's nacks mean it is stuck (``NackStreaks``)."""

from __future__ import annotations

from execflow.backends.rabbitmq_nacks import NackStreaks

CHANNEL, OTHER = object(), object()


def test_a_streak_calls_for_a_new_channel_once_it_lasted() -> None:
    streaks = NackStreaks(replace_after_s=2.0)
    assert not streaks.nacked("q", CHANNEL, now_s=10.0)
    assert not streaks.nacked("q", CHANNEL, now_s=11.9)
    assert streaks.nacked("q", CHANNEL, now_s=12.0)


def test_a_confirm_on_the_channel_ends_the_streak_of_its_queue_only() -> None:
    streaks = NackStreaks(replace_after_s=2.0)
    streaks.nacked("q", CHANNEL, now_s=10.0)
    streaks.nacked("r", CHANNEL, now_s=10.0)
    streaks.confirmed("q", CHANNEL)
    streaks.confirmed("r", OTHER)  # another channel's confirm says nothing of this one
    assert not streaks.nacked("q", CHANNEL, now_s=12.5)
    assert streaks.nacked("r", CHANNEL, now_s=12.5)


def test_a_new_channel_starts_its_own_streak() -> None:
    streaks = NackStreaks(replace_after_s=2.0)
    streaks.nacked("q", CHANNEL, now_s=10.0)
    assert not streaks.nacked("q", OTHER, now_s=13.0)
    assert streaks.nacked("q", OTHER, now_s=15.0)


def test_no_delay_replaces_at_the_first_nack() -> None:
    assert NackStreaks(replace_after_s=0.0).nacked("q", CHANNEL, now_s=1.0)
