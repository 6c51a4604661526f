"""KAME's restart rule, step by step with made-up times: the reference's defaults and kame's options.

`RestartPolicy` is pure (no loop, no clock), so each rule is one short script of what the user said,
what the streams did, and what the policy decides at time t.
"""

from __future__ import annotations

from kame_cli.backends.oracle.config import PolicyConfig
from kame_cli.backends.oracle.policy import RestartPolicy, StartReason, words_of


class Script:
    """A policy and the facts the producer would give it: the words said, whether a stream runs."""

    def __init__(self, **config: object) -> None:
        self.policy = RestartPolicy(PolicyConfig(**config))  # type: ignore[arg-type]
        self.said: list[str] = []
        self.partial = ""
        self.running = False

    @property
    def user_words(self) -> int:
        return sum(len(t.split()) for t in self.said) + len(self.partial.split())

    def hear(self, text: str, *, pause: bool = False) -> bool:
        changed = bool(text) and text != self.partial
        self.partial = text
        return self.policy.on_partial(text, changed=changed, pause=pause)

    def final(self, text: str) -> bool:
        self.said.append(text)
        self.partial = ""
        return self.policy.on_final(text, running=self.running)

    def decide(self, t: float) -> StartReason | None:
        return self.policy.decide(t, running=self.running, user_words=self.user_words)

    def step(self, t: float) -> StartReason | None:
        """What the producer does at time t: ask, and on a reason start a stream."""
        reason = self.decide(t)
        if reason is not None:
            user_text = self.partial or (self.said[-1] if self.said else "")
            self.policy.on_start(t, user_words=self.user_words, user_text=user_text)
            self.running = True
        return reason

    def complete(self) -> None:
        self.running = False
        self.policy.on_answering()
        self.policy.on_completed()


def test_the_reference_defaults() -> None:
    config = PolicyConfig()
    assert (config.poll_interval_s, config.min_new_words, config.max_restarts, config.restart_window_s) == (
        0.5,
        2,
        5,
        2.0,
    )
    assert config.restart_on_final and config.after_finish == "new_words"
    assert not (config.restart_on_pause or config.restart_on_same_final)


def test_nothing_to_do_without_user_text() -> None:
    s = Script()
    assert s.step(0.0) is None
    assert not s.hear("")
    assert s.step(0.5) is None


def test_start_when_idle_with_pending_text_then_restart_on_two_new_words() -> None:
    s = Script()
    assert s.hear("what is")
    assert s.step(0.0) == "first"
    assert s.step(0.5) is None  # nothing new
    assert s.hear("what is the")  # one word more: new text, but not enough for a restart
    assert s.step(1.0) is None
    assert s.hear("what is the capital")  # two more than at the start
    assert s.step(1.5) == "words"


def test_a_final_restarts_whatever_its_word_count() -> None:
    s = Script()
    s.hear("what is the capital of")
    assert s.step(0.0) == "first"
    assert s.final("what is the capital of France")  # one word more, but final
    assert s.step(0.5) == "final"


def test_without_restart_on_final_a_final_needs_the_new_words_too() -> None:
    s = Script(restart_on_final=False)
    s.hear("what is the capital of")
    s.step(0.0)
    s.final("what is the capital of France")
    assert s.step(0.5) is None
    s.hear("and of Spain")
    assert s.step(1.0) == "final"  # the reason names the final it answers


def test_at_most_five_starts_in_any_two_seconds() -> None:
    s = Script()
    words = [f"w{i}" for i in range(14)]
    starts = []
    for i in range(7):
        s.hear(" ".join(words[: 2 * (i + 1)]))
        starts.append(s.step(0.1 * i))
    assert starts == ["first", "words", "words", "words", "words", None, None]
    assert s.step(1.9) is None  # the first start (t=0) is still inside the window
    assert s.step(2.0) == "words"  # it left the window: one more start fits


def test_a_finished_answer_stays_current_under_the_reference_rule() -> None:
    s = Script()
    s.hear("tell me a joke")
    s.step(0.0)
    s.complete()
    assert s.hear("tell me a joke about")  # new text, one word more
    assert s.step(0.5) is None
    s.hear("tell me a joke about cats")
    assert s.step(1.0) == "first"


def test_any_change_starts_on_any_new_text_after_an_answer() -> None:
    s = Script(after_finish="any_change")
    s.hear("tell me a joke")
    s.step(0.0)
    s.complete()
    s.hear("tell me a joke about")
    assert s.step(0.5) == "first"


def test_a_final_with_the_answered_words_keeps_the_answer() -> None:
    s = Script()
    s.hear("what time is it")
    s.step(0.0)
    assert not s.final("What time is it?")  # case and punctuation aside, the same words
    assert s.step(0.5) is None
    s.complete()
    assert not s.final("what time is it")
    assert s.step(1.0) is None


def test_restart_on_same_final_restarts_anyway() -> None:
    s = Script(restart_on_same_final=True)
    s.hear("what time is it")
    s.step(0.0)
    assert s.final("what time is it")
    assert s.step(0.5) == "final"


def test_restart_on_pause_acts_on_a_corrected_last_word() -> None:
    s = Script(restart_on_pause=True)
    s.hear("what is the capital of frat")
    assert s.step(0.0) == "first"
    # The pause partial corrects the last word: no word more, yet it restarts, as a final would.
    assert s.hear("what is the capital of France", pause=True)
    assert s.step(0.3) == "pause"
    # The same words again at a pause: nothing new.
    assert not s.hear("what is the capital of France", pause=True)
    assert s.step(0.6) is None


def test_without_restart_on_pause_a_corrected_word_waits_for_the_final() -> None:
    s = Script()
    s.hear("what is the capital of frat")
    s.step(0.0)
    assert s.hear("what is the capital of France", pause=True)
    assert s.step(0.3) is None
    s.final("what is the capital of France")
    assert s.step(0.6) == "final"


def test_a_failure_backs_off_doubling_to_the_maximum_and_an_answer_resets_it() -> None:
    s = Script(backoff_initial_s=0.5, backoff_max_s=1.5)
    s.hear("hello there")
    assert s.step(0.0) == "first"
    s.running = False
    assert s.policy.on_failed(0.0) == 0.5
    assert s.step(0.4) is None  # backing off; the same text is tried again after it
    assert s.step(0.5) == "first"
    s.running = False
    assert s.policy.on_failed(0.5) == 1.0
    assert s.step(1.4) is None and s.step(1.5) == "first"
    s.running = False
    assert s.policy.on_failed(1.5) == 1.5  # doubled to 2.0, held at the maximum
    assert s.step(3.0) == "first"
    s.policy.on_answering()
    s.running = False
    assert s.policy.on_failed(3.1) == 0.5


def test_at_once_options_say_when_new_text_is_acted_on() -> None:
    s = Script()
    assert s.policy.check_at_once(running=False) and s.policy.check_at_once(running=True)
    s = Script(start_at_once=False, restart_at_once=False)
    assert not s.policy.check_at_once(running=False) and not s.policy.check_at_once(running=True)
    s.hear("hello there")
    s.step(0.0)
    s.hear("hello there my friend")
    s.complete()
    assert not s.policy.start_after_completion()
    assert Script().policy.start_after_completion() is False  # nothing pending


def test_new_text_during_a_stream_is_started_when_it_completes() -> None:
    s = Script(after_finish="any_change")
    s.hear("hello there")
    s.step(0.0)
    s.hear("hello there friend")  # one word: no restart while it runs
    assert s.step(0.1) is None
    s.complete()
    assert s.policy.start_after_completion()
    assert s.step(0.2) == "first"


def test_words_are_compared_without_case_or_punctuation() -> None:
    assert words_of('Paris. Is it, "really"?') == ("paris", "is", "it", "really")
    assert words_of(" ... ") == ()
