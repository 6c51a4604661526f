"""The reference notes in the prompt: tagged with their source, bounded, after the conversation."""

from __future__ import annotations

from kame_cli.backends.oracle.config import PromptConfig
from kame_cli.backends.oracle.prompt import NOTES_HEADING, Turn, build_messages, notes_block
from kame_cli.knowledge.passages import Passage

RETURNS = Passage("handbook.md", "Returns", "A kettle may be returned within 45 days.")
SHIPPING = Passage("handbook.md", "Shipping", "Orders ship from Osaka at noon.")


def test_each_passage_is_one_line_tagged_with_its_source() -> None:
    block, used = notes_block([RETURNS, SHIPPING], 2000)
    assert used == 2
    assert block.splitlines() == [
        NOTES_HEADING,
        "[source: handbook.md > Returns] A kettle may be returned within 45 days.",
        "[source: handbook.md > Shipping] Orders ship from Osaka at noon.",
    ]


def test_the_budget_keeps_whole_passages_in_rank_order() -> None:
    first = len("[source: handbook.md > Returns] A kettle may be returned within 45 days.")
    block, used = notes_block([RETURNS, SHIPPING], first + 10)
    assert used == 1 and "Osaka" not in block
    # A first passage longer than the whole budget is cut at a word, never dropped.
    block, used = notes_block([RETURNS], 40)
    line = block.splitlines()[1]
    assert used == 1 and len(line) <= 40 and line.startswith("[source: handbook.md > Returns] A")
    assert notes_block([], 2000) == ("", 0)


def test_notes_come_before_the_conversation_so_the_same_passages_keep_the_prefix() -> None:
    prompt = PromptConfig()
    turns = [Turn("User", "hello"), Turn("Assistant", "hi there")]
    block, _ = notes_block([RETURNS], 2000)
    plain = build_messages(prompt, turns, "can I return my kettle")
    informed = build_messages(prompt, turns, "can I return my kettle", block)
    assert informed[0] == plain[0]
    assert informed[1]["content"] == f"{block}\n\n{plain[1]['content']}"
    # A restart on more words that retrieve the same passage: only the user's line differs.
    later = build_messages(prompt, turns, "can I return my kettle after a month", block)
    first, second = informed[1]["content"], later[1]["content"]
    shared = len(first) - len(first.split("User: can I return my kettle")[1])
    assert first[:shared] == second[:shared] and shared > len(block) + len("User: hello")
