"""The conversation contract: prompts as strings or message lists, responses as text or assistant messages."""

import pytest

from aepo_datasets.conversation import (
    conversation, is_conversation, is_empty_prompt, prompt_label, prompt_messages, prompt_text, response_text,
)

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of France?"}]


def test_detection_follows_trl():
    assert is_conversation(CHAT)
    assert not is_conversation("Hi") and not is_conversation([]) and not is_conversation(["a", "b"])


def test_string_prompt_becomes_one_user_message():
    assert conversation("Hi", "Hello") == [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def test_chat_prompt_keeps_every_turn_and_drops_extra_keys():
    chat = [dict(m, name="x") for m in CHAT]
    assert prompt_messages(chat) == CHAT
    assert conversation(CHAT, "Paris.")[-1] == {"role": "assistant", "content": "Paris."}


def test_prompt_text_of_a_history_names_each_role():
    assert prompt_text([{"role": "user", "content": "Hi"}]) == "Hi"
    text = prompt_text(CHAT)
    assert text.startswith("System: Be brief.") and text.endswith("User: Capital of France?")


def test_response_text_reads_assistant_messages():
    assert response_text("x") == "x" and response_text(None) is None
    assert response_text({"role": "assistant", "content": "x"}) == "x"
    assert response_text([{"role": "assistant", "content": "x"}]) == "x"
    assert response_text([{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]) == "x"
    with pytest.raises(ValueError, match="role 'assistant'"):
        response_text({"role": "user", "content": "x"})
    with pytest.raises(ValueError, match="float"):
        response_text(3.0)


def test_labels_and_emptiness():
    assert prompt_label(CHAT) == "Capital of France?"
    assert is_empty_prompt([{"role": "user", "content": "  "}]) and not is_empty_prompt(CHAT)
