"""How ensure_topics reads the broker's per-topic answer to CreateTopics."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka.errors import PolicyViolationError

from telex.kafka.admin import created_by


def answer(*topic_errors: tuple[object, ...]) -> SimpleNamespace:
    # The shape of aiokafka's CreateTopicsResponse: (topic, error_code[, error_message]).
    return SimpleNamespace(topic_errors=list(topic_errors))


def test_created_topic_counts_as_created() -> None:
    assert created_by(answer(("t", 0, None)), "t") is True
    assert created_by(answer(("t", 0)), "t") is True


def test_topic_that_already_exists_is_not_created_by_us() -> None:
    # 36: TOPIC_ALREADY_EXISTS, answered when a broker's metadata was a moment behind.
    assert created_by(answer(("t", 36, "Topic 't' already exists.")), "t") is False


def test_any_other_answer_is_a_clear_error() -> None:
    with pytest.raises(PolicyViolationError, match="creating topic t: no compaction here"):
        created_by(answer(("t", 44, "no compaction here")), "t")
    with pytest.raises(PolicyViolationError, match="creating topic t: "):
        created_by(answer(("t", 44, None)), "t")


def test_answer_for_another_topic_says_nothing() -> None:
    assert created_by(answer(("other", 0, None)), "t") is False
