"""What is taken from a model's answer as a prompt: the prompt, without the chatter,
labels, quotes and list marks chat models wrap it in, within the length limit."""

from __future__ import annotations

import pytest

from stillhouse.prompt_help import clean_prompt, suggestions


@pytest.mark.parametrize(
    "answer",
    [
        "a fox in snow, ink drawing",
        '"a fox in snow, ink drawing"',
        "Prompt: a fox in snow, ink drawing",
        "Enhanced prompt - “a fox in snow, ink drawing”",
        "**Prompt:** a fox in snow, ink drawing",
        "Here is your rewritten prompt:\n\na fox in snow, ink drawing\n\nI added a medium.",
        "```\na fox in snow,   ink drawing\n```",
    ],
)
def test_the_prompt_is_taken_out_of_what_surrounds_it(answer: str) -> None:
    assert clean_prompt(answer, 1000) == "a fox in snow, ink drawing"


def test_a_prompt_past_the_limit_ends_after_a_whole_phrase() -> None:
    answer = "a fox in snow, ink drawing, soft light, muted palette, wide shot"
    assert clean_prompt(answer, 40) == "a fox in snow, ink drawing, soft light"


def test_a_phrase_longer_than_half_the_limit_ends_after_a_whole_word() -> None:
    assert clean_prompt("a fox sleeping in deep snow under pines", 20) == "a fox sleeping in"


def test_nothing_usable_is_an_empty_prompt() -> None:
    assert clean_prompt('  ""\n\n', 1000) == ""


def test_suggestions_are_at_most_three_distinct_prompts() -> None:
    answer = (
        "Sure! Here are three prompts:\n"
        "1. a red barn, watercolour\n"
        "2) A red barn, watercolour\n"
        "- Prompt 2: a red barn at dawn, photo\n"
        "3. a barn in fog\n"
        "4. one too many"
    )
    assert suggestions(answer, 1000) == [
        "a red barn, watercolour",
        "a red barn at dawn, photo",
        "a barn in fog",
    ]
