"""The conversation the oracle keeps and the messages built from it."""

from __future__ import annotations

from kame_cli.backends.oracle.config import PromptConfig
from kame_cli.backends.oracle.prompt import Conversation, Turn, build_messages


def test_conversation_keeps_one_line_per_speaker_turn() -> None:
    conversation = Conversation()
    conversation.set_partial("what is")
    conversation.set_partial("what is  the capital")
    assert conversation.user_words == 4 and conversation.turns == []
    conversation.close_user_turn(" what is the capital of France ")
    assert conversation.partial == "" and conversation.current_user_text == "what is the capital of France"
    for piece in ["\u2581Paris", ",", "\u2581I", "\u2581think", "."]:
        conversation.add_frontend_text(piece)
    conversation.add_frontend_text("\u2581")  # a lone space piece is kept inside the line
    conversation.set_partial("and italy")
    assert conversation.turns == [
        Turn("User", "what is the capital of France"),
        Turn("Assistant", " Paris, I think. "),
    ]
    assert conversation.user_words == 6 + 2
    assert conversation.current_user_text == "and italy"


def test_leading_frontend_silence_does_not_open_a_turn() -> None:
    conversation = Conversation()
    conversation.add_frontend_text(" ")
    assert conversation.turns == []


def test_messages_hold_system_prompt_and_last_turns() -> None:
    prompt = PromptConfig(system="Be brief.", user_template="Talk:\n{conversation}\nReply:", max_turns=3)
    turns = [Turn("User", "hi"), Turn("Assistant", " Hello   there. "), Turn("User", "how are you")]
    messages = build_messages(prompt, turns, "and what is")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": "Talk:\nAssistant: Hello there.\nUser: how are you\nUser: and what is\nReply:",
        },
    ]
    assert build_messages(prompt, [], "")[1]["content"] == "Talk:\n\nReply:"


def test_hold_context_shows_the_conversation_as_it_stood_when_the_turn_began() -> None:
    held = Conversation(hold_context=True)
    plain = Conversation(hold_context=False)
    for conversation in (held, plain):
        conversation.set_partial("hello", turn_start=0.0)
        conversation.close_user_turn("hello there")
        conversation.add_frontend_text("\u2581Hi")
        conversation.set_partial("what is", turn_start=2.0)  # a new turn begins
        conversation.add_frontend_text("\u2581how")  # the front-end talks on during it
        conversation.set_partial("what is the time", turn_start=2.0)
    assert held.context == [Turn("User", "hello there"), Turn("Assistant", " Hi")]
    assert plain.context == [Turn("User", "hello there"), Turn("Assistant", " Hi how")]
    # The final's request too sees the held lines, then the final; the front-end's words join next turn.
    held.close_user_turn("what is the time")
    assert held.context == [
        Turn("User", "hello there"),
        Turn("Assistant", " Hi"),
        Turn("User", "what is the time"),
    ]
    held.set_partial("thanks", turn_start=5.0)
    assert (
        held.context[-1] == Turn("User", "what is the time") and Turn("Assistant", " Hi how") in held.context
    )
