"""The tiny student's BPE: deterministic, trained only on what ships with trajforge, and coarse
enough that the R1V4 turn's tags, JSON keys and tool names are one or two tokens each (a
near-character tokenizer made every word several greedy decisions for a 2-layer student)."""

from __future__ import annotations

import pytest

from stages.sft.processor import ADDED_TOKENS, SPECIAL_TOKENS, build_tiny_tokenizer
from stages.sft.tokenizer_corpus import SAMPLE_TURNS, tokenizer_corpus

TURN = (
    "<think>The label in the top left corner is small; I will crop it.</think>"
    '<tool_call>{"name": "code", "arguments": {"code": "print(1)"}}</tool_call>'
)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _pieces(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_same_vocabulary_on_every_build(tokenizer):
    again = build_tiny_tokenizer()
    assert again.get_vocab() == tokenizer.get_vocab()
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()


def test_vocabulary_is_a_few_thousand_with_the_qwen_tokens(tokenizer):
    assert 1500 <= len(tokenizer) <= 4096
    for token in (*SPECIAL_TOKENS, *ADDED_TOKENS):
        assert _pieces(tokenizer, token) == [token]
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"


@pytest.mark.parametrize("word", ["name", "arguments", "code", "image", "queries", "urls", " the", " answer"])
def test_json_keys_and_common_words_are_single_tokens(tokenizer, word):
    assert len(_pieces(tokenizer, word)) == 1, _pieces(tokenizer, word)


@pytest.mark.parametrize("tool", ["image_search", "text_search", "web_visit", "code"])
def test_tool_names_take_at_most_two_tokens(tokenizer, tool):
    assert len(_pieces(tokenizer, f'"{tool}"')) <= 4, _pieces(tokenizer, f'"{tool}"')  # `"`/` "`, name, `"`


def test_a_turn_takes_few_tokens_and_decodes_back(tokenizer):
    ids = tokenizer(TURN, add_special_tokens=False)["input_ids"]
    assert len(ids) <= 40, len(ids)  # 38 here; the 482-token BPE it replaced needed 55
    assert tokenizer.decode(ids) == TURN


@pytest.mark.parametrize("text", ["Größe: 12 µm\n\n  indented\ttab", "数字 3.14 — “quoted” 🙂", "a\r\nb"])
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_corpus_is_only_what_ships_with_trajforge():
    corpus = tokenizer_corpus()
    assert corpus == tokenizer_corpus()
    assert corpus[-len(SAMPLE_TURNS) :] == list(SAMPLE_TURNS)
    assert any("<answer>" in text for text in corpus)
    assert any('"image_search"' in text for text in corpus)
