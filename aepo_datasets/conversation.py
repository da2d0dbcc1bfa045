"""Conversations as data: a prompt is a string or a list of `{"role", "content"}` messages.

The contract every step and annotator follows (STYLE.md 19):
- a prompt stays in the form the input gave it (a string, or a message list: system and multi-turn history
  included) from the input to the output; it is never stringified;
- a response is text inside the pipeline; an input response given as an assistant message (a dict, or a
  list holding one assistant message) is read as its content;
- a model sees a conversation rendered only at its own door: a chat-template model gets
  `conversation(prompt, response)` through its template; a text-only annotator gets `prompt_text(prompt)`.

Detection follows TRL's `is_conversational`: a list whose items are dicts with a "role" key.
"""

from __future__ import annotations

from typing import Any

ROLES = ("system", "user", "assistant", "tool", "developer")


def is_message(value: Any) -> bool:
    return isinstance(value, dict) and "role" in value and "content" in value


def is_conversation(value: Any) -> bool:
    """A non-empty list of messages (TRL's conversational form)."""
    return isinstance(value, (list, tuple)) and len(value) > 0 and all(is_message(m) for m in value)


def prompt_messages(prompt: Any) -> list[dict]:
    """The prompt as a message list: a string becomes one user message; a conversation is copied
    (role and content only, so extra keys never reach a chat template)."""
    if is_conversation(prompt):
        return [{"role": m["role"], "content": _content_text(m["content"])} for m in prompt]
    return [{"role": "user", "content": "" if prompt is None else str(prompt)}]


def conversation(prompt: Any, response: str) -> list[dict]:
    """The prompt's messages followed by the response as the assistant's turn."""
    return prompt_messages(prompt) + [{"role": "assistant", "content": response}]


def assistant_message(response: str) -> list[dict]:
    """A response in TRL's conversational form: a list holding one assistant message."""
    return [{"role": "assistant", "content": response}]


def response_text(value: Any) -> str | None:
    """Text of a response given as a string, an assistant message, or a list holding one assistant
    message; None stays None. Raises ValueError (with what was found) for anything else."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    if is_message(value):
        if value["role"] != "assistant":
            raise ValueError(f"a response message must have role 'assistant', got role {value['role']!r}")
        return _content_text(value["content"])
    raise ValueError(f"expected text or an assistant message, got {type(value).__name__}")


def prompt_text(prompt: Any) -> str:
    """The prompt as plain text for annotators without a chat template: a string as is; a conversation of
    one user message is its content; a longer one is each turn as `Role: content`, separated by blank lines."""
    if not is_conversation(prompt):
        return "" if prompt is None else str(prompt)
    messages = prompt_messages(prompt)
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def prompt_label(prompt: Any, width: int = 60) -> str:
    """A short name of a prompt for messages: its last user turn, cut at `width` characters."""
    if is_conversation(prompt):
        users = [m for m in prompt_messages(prompt) if m["role"] == "user"]
        text = (users or prompt_messages(prompt))[-1]["content"]
    else:
        text = "" if prompt is None else str(prompt)
    return text[:width] + ("..." if len(text) > width else "")


def is_empty_prompt(prompt: Any) -> bool:
    if is_conversation(prompt):
        return not any(m["content"].strip() for m in prompt_messages(prompt))
    return prompt is None or not str(prompt).strip()


def _content_text(content: Any) -> str:
    """Message content as text: a string, or OpenAI-style parts `[{"type": "text", "text": ...}]` joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        return "".join(part.get("text") or "" for part in content if isinstance(part, dict))
    return str(content)
