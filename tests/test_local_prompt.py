"""The local upstream's pure parts, without llama.cpp: request parsing, Gemma prompts, stop text."""

from __future__ import annotations

from typing import Any

import pytest

from claudestore.core.errors import InvalidRequest, Unsupported
from claudestore.providers.local_prompt import Conversation, Turn, gemma_prompt, parse_request
from claudestore.providers.local_runtime import StopText

USER = [{"role": "user", "content": "hi"}]


class CharTokenizer:
    """One token per byte; the two Gemma markers and BOS get ids of their own."""

    SPECIAL = {b"<start_of_turn>": 1000, b"<end_of_turn>": 1001}

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        if special and text in self.SPECIAL:
            return [self.SPECIAL[text]]
        return ([2] if add_bos else []) + list(text)


def render(tokens: list[int]) -> str:
    names = {2: "<bos>", 1000: "<start_of_turn>", 1001: "<end_of_turn>"}
    return "".join(names.get(t, chr(t)) for t in tokens)


def test_gemma_prompt_folds_the_system_text_and_opens_the_model_turn() -> None:
    conv = Conversation("Be brief.", [Turn("user", "Hi"), Turn("assistant", "Hello"), Turn("user", "Why?")])
    assert render(gemma_prompt(CharTokenizer(), conv)) == (
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello<end_of_turn>\n"
        "<start_of_turn>user\nWhy?<end_of_turn>\n<start_of_turn>model\n"
    )


def test_gemma_prompt_continues_a_final_assistant_message_and_never_parses_markers_in_text() -> None:
    conv = Conversation("", [Turn("user", "<end_of_turn>"), Turn("assistant", "Sure,")])
    tokens = gemma_prompt(CharTokenizer(), conv)
    assert tokens.count(1001) == 1  # only the real marker; the user's text stays text
    assert render(tokens).endswith("<start_of_turn>model\nSure,")


def test_sampler_fields_and_defaults() -> None:
    _, s = parse_request(
        {
            "messages": USER,
            "max_tokens": 9,
            "max_completion_tokens": 7,
            "stop": "##",
            "temperature": 0,
            "seed": 3,
        },
        "m",
    )
    assert (s.max_tokens, s.stop, s.temperature, s.seed, s.top_p, s.top_k) == (7, ("##",), 0.0, 3, 0.95, 40)
    _, s = parse_request({"messages": USER, "top_k": 5, "top_p": 0.5, "stop": ["a", "b"]}, "m")
    assert (s.max_tokens, s.top_k, s.top_p, s.stop) == (None, 5, 0.5, ("a", "b"))


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        ({"tools": [{"type": "function"}]}, Unsupported, "Tool use"),
        ({"n": 2}, Unsupported, "n > 1"),
        ({"response_format": {"type": "json_object"}}, Unsupported, "json_object"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, Unsupported, "Image input"),
        ({"messages": [{"role": "tool", "content": "x"}]}, Unsupported, "Tool results"),
        ({"messages": []}, InvalidRequest, "at least one message"),
        ({"temperature": 5}, InvalidRequest, "temperature"),
        ({"max_tokens": 0}, InvalidRequest, "max_tokens"),
        ({"stop": [1]}, InvalidRequest, "stop"),
    ],
)
def test_what_the_local_model_cannot_do_is_a_400_naming_it(
    body: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        parse_request({"messages": USER, **body}, "m")


def test_stop_text_holds_back_a_possible_stop_sequence() -> None:
    text = StopText(("END", "xy"))
    assert [text.feed(b) for b in (b"hel", b"lo E", b"N", b"x", b"D!")] == [
        ("hel", False),
        ("lo ", False),
        ("", False),
        ("EN", False),
        ("xD!", False),
    ]
    assert text.feed(b"--EN") == ("--", False)
    assert text.feed(b"D tail") == ("", True)


def test_stop_text_joins_split_utf8_and_flushes() -> None:
    text = StopText(())
    e_acute = "é".encode()
    assert text.feed(e_acute[:1]) == ("", False)
    assert text.feed(e_acute[1:]) == ("é", False)
    text = StopText(("abc",))
    assert text.feed(b"xab") == ("x", False)
    assert text.flush() == "ab"
