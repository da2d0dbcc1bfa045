"""Reward-model inputs as token ids: a conversation through the model's chat template, or a text pair.

Chat models: `conversation(prompt, response)` is rendered by the tokenizer's own template and tokenized
without special tokens: exactly `tokenizer.apply_chat_template(messages, tokenize=True)`, the tokens the model
cards and vLLM score, with nothing added (no BOS the template did not write, even when the tokenizer adds one
to plain text). A conversation longer than `max_length` keeps what is judged: whole earlier turns
go first (a system message stays while it can), then the start of the first remaining turn, then the
system message; only a response that does not fit alone is cut, at its end, and the template's closing
tokens are always kept (the conversation is re-rendered, never sliced as ids).

Text-pair models (no template) get `(prompt_text(prompt), response)`; the response is cut at its end, and
a prompt that would leave the response less than half of `max_length` is cut from its start.
"""

from __future__ import annotations

import copy
from typing import Callable

from ..conversation import conversation, prompt_text
from ..models.encoding import BulkTokenizer

MAX_REFITS = 4  # re-renders of one cut turn: tokens can merge differently at the new edge


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of a text when asked for special tokens."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


class ChatEncoder:
    """Token ids of (prompt, response) pairs through the chat template; `truncated` counts cut conversations."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.bulk = BulkTokenizer(tokenizer, add_special_tokens=False)
        self.truncated = 0

    def render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False)

    def ids(self, messages: list[dict]) -> list[int]:
        """`apply_chat_template(messages, tokenize=True)`: the rendered text without added special tokens."""
        return self.bulk([self.render(messages)])[0]

    def __call__(self, prompts, responses) -> list[list[int]]:
        chats = [conversation(p, r) for p, r in zip(prompts, responses)]
        ids = self.bulk([self.render(c) for c in chats])
        for i, x in enumerate(ids):
            if len(x) > self.max_length:
                self.truncated += 1
                ids[i] = fit_conversation(chats[i], self.ids, self.max_length, self.content_ids, x)
        return ids

    def content_ids(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the tokens of `text` alone."""
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]


def fit_conversation(messages: list[dict], encode: Callable[[list[dict]], list[int]], max_length: int,
                     spans: Callable[[str], list[tuple[int, int]]], ids: list[int] | None = None) -> list[int]:
    """Ids of the longest version of `messages` (prompt turns, then the response last) that fits; `ids`: those
    of `messages` whole when the caller has them (a conversation is not rendered twice)."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    turns, reply = messages[len(system):-1], messages[-1]
    ids = encode(messages) if ids is None else ids
    while len(ids) > max_length and len(turns) > 1:
        turns = drop_oldest_turn(turns)
        ids = encode(system + turns + [reply])
    for keep_system in ((True, False) if system else (True,)):
        head = system if keep_system else []
        if len(ids) > max_length and turns:
            turns[0], ids = cut_content(turns[0], lambda m: encode(head + [m] + turns[1:] + [reply]),
                                        max_length, spans, keep="end", ids=ids)
        if len(ids) > max_length and keep_system and system:
            ids = encode(turns + [reply])
    if len(ids) > max_length:
        _, ids = cut_content(reply, lambda m: encode(turns + [m]), max_length, spans, keep="start", ids=ids)
    return ids


def drop_oldest_turn(turns: list[dict]) -> list[dict]:
    """Without the oldest message, and without the answers that then open the history (a user turn leads)."""
    rest = turns[1:]
    while len(rest) > 1 and rest[0]["role"] != "user":
        rest = rest[1:]
    return rest


def cut_content(message: dict, encode: Callable[[dict], list[int]], max_length: int,
                spans: Callable[[str], list[tuple[int, int]]], keep: str,
                ids: list[int] | None = None) -> tuple[dict, list[int]]:
    """`message` with as many tokens of its content cut (from the start if `keep="end"`, else from the end)
    as makes `encode(message)` fit; the content may end up empty and still not fit. `ids`: `encode(message)`
    when the caller has it."""
    content, cut = message["content"], 0
    ids = encode(message) if ids is None else ids
    for _ in range(MAX_REFITS):
        if len(ids) <= max_length or not content:
            break
        offsets = spans(content)
        cut = len(ids) - max_length
        if cut >= len(offsets):
            content = ""
        elif keep == "end":
            content = content[offsets[cut][0]:]
        else:
            content = content[: offsets[len(offsets) - cut - 1][1]]
        message = {**message, "content": content}
        ids = encode(message)
    if len(ids) > max_length and content:
        message = {**message, "content": ""}
        ids = encode(message)
    return message, ids


class PairEncoder:
    """Token ids of (prompt_text, response) text pairs with the tokenizer's special tokens; `truncated`
    counts cut pairs."""

    def __init__(self, tokenizer, max_length: int):
        self.max_length = max_length
        self.bulk = BulkTokenizer(tokenizer, add_special_tokens=True)
        self.backend = copy.deepcopy(tokenizer.backend_tokenizer)
        self.backend.no_truncation()
        self.backend.no_padding()
        self.room = max_length - self.backend.num_special_tokens_to_add(is_pair=True)
        self.truncated = 0

    def __call__(self, prompts, responses) -> list[list[int]]:
        pairs = [(prompt_text(p), r) for p, r in zip(prompts, responses)]
        ids = self.bulk(pairs)
        for i, x in enumerate(ids):
            if len(x) > self.max_length:
                self.truncated += 1
                ids[i] = self.fit(*pairs[i])
        return ids

    def fit(self, prompt: str, response: str) -> list[int]:
        """The response cut at its end; the prompt cut from its start when it would leave the response less
        than half of the room."""
        first, second = (self.backend.encode(t, add_special_tokens=False) for t in (prompt, response))
        keep_prompt = max(self.room - len(second.ids), self.room - self.room // 2, 0)
        if len(first.ids) > keep_prompt:
            first.truncate(keep_prompt, direction="left")
        second.truncate(max(self.room - len(first.ids), 0), direction="right")
        if self.backend.post_processor is None:
            return first.ids + second.ids
        return self.backend.post_processor.process(first, second, add_special_tokens=True).ids
