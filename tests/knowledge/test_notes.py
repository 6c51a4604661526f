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


def test_notes_follow_the_conversation_so_its_prefix_stays_the_same() -> None:
    prompt = PromptConfig()
    turns = [Turn("User", "hello"), Turn("Assistant", "hi there")]
    plain = build_messages(prompt, turns, "can I return my kettle")
    block, _ = notes_block([RETURNS], 2000)
    informed = build_messages(prompt, turns, "can I return my kettle", block)
    assert informed[0] == plain[0]
    user = informed[1]["content"]
    said = "User: can I return my kettle"
    conversation_end = plain[1]["content"].index(said) + len(said)
    assert user[:conversation_end] == plain[1]["content"][:conversation_end]
    assert user.index(NOTES_HEADING) > conversation_end
    assert user.rstrip().endswith("The assistant's reply:")
