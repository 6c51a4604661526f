"""KAME's restart policy, pure: told what the user said and what the streams did, asked at time t.

The reference's rule: with user text pending and no stream running, start one; while one runs
(or, after it finished, while its answer is current), restart when the user said `min_new_words`
more words than at the last start, or a final transcript came; at most `max_restarts` starts in
any `restart_window_s`. kame's options (`PolicyConfig`) widen or narrow it. No asyncio and no clock
here: the caller passes the time in and carries out the decisions (`OracleProducer`), so the rule
is tested step by step with made-up times.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from kame_cli.backends.oracle.config import PolicyConfig

StartReason = Literal["first", "words", "final", "pause"]


def words_of(text: str) -> tuple[str, ...]:
    """A transcript's words for comparison: case and punctuation aside ("Paris." is "paris")."""
    return tuple(w for w in (word.strip(".,!?;:\"'").lower() for word in text.split()) if w)


class RestartPolicy:
    """When to start or restart an LLM request, from transcripts and stream outcomes."""

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config
        self._pending = False
        self._final_pending = False
        # The STT's pause partial (`restart_on_pause`) holds words the last request lacks.
        self._pause_pending = False
        self._words_at_start = 0
        self._text_at_start: tuple[str, ...] = ()
        # The last stream completed and, under the reference rule, is still the current answer.
        self._answered = False
        self._starts: deque[float] = deque()
        self._retry_at = 0.0
        self._backoff = config.backoff_initial_s

    # --- what the user said ------------------------------------------------------------------------

    def on_partial(self, text: str, *, changed: bool, pause: bool) -> bool:
        """The STT's partial `text` (`changed`: it differs from the last one; `pause`: made at the
        speaker's pause). True when it is new user text to act on."""
        if pause and self.config.restart_on_pause and text and words_of(text) != self._text_at_start:
            self._pause_pending = True
        if changed or self._pause_pending:
            self._pending = True
            return True
        return False

    def on_final(self, text: str, *, running: bool) -> bool:
        """A final transcript (`running`: a stream runs now). True when it is new user text to act on;
        a final with the very words of the request already answering keeps that answer."""
        if not text.strip():
            return False
        answering = running or self._answered
        if answering and not self.config.restart_on_same_final and words_of(text) == self._text_at_start:
            return False
        self._pending = True
        self._final_pending = True
        return True

    def check_at_once(self, *, running: bool) -> bool:
        """Whether new user text is acted on as it arrives (`start_at_once`, `restart_at_once`)
        rather than at the next poll."""
        return self.config.restart_at_once if running else self.config.start_at_once

    # --- the decision ------------------------------------------------------------------------------

    def decide(self, now: float, *, running: bool, user_words: int) -> StartReason | None:
        """Whether to start a request at time `now` (seconds, any monotonic origin), and why.

        `running`: a stream runs; `user_words`: the words the user has said in the session so far.
        None: nothing pending, backing off, not enough new words, or capped (asked again at the next
        poll). The caller that acts on a reason reports it with `on_start`.
        """
        if not self._pending or now < self._retry_at:
            return None
        config = self.config
        # The reference keeps a finished answer as the current stream: after it, as while a stream
        # runs, a new request needs enough new words or a final.
        current = running or (self._answered and config.after_finish == "new_words")
        if current:
            grown = user_words - self._words_at_start >= config.min_new_words
            final = self._final_pending and config.restart_on_final
            if not (grown or final or self._pause_pending):
                return None
        while self._starts and self._starts[0] <= now - config.restart_window_s:
            self._starts.popleft()
        if len(self._starts) >= config.max_restarts:
            return None
        if self._final_pending:
            return "final"
        if self._pause_pending:
            return "pause"
        return "words" if running else "first"

    def start_after_completion(self) -> bool:
        """Whether a stream that just completed leaves user text to act on at once."""
        return self._pending and self.config.start_at_once

    # --- what the streams did ----------------------------------------------------------------------

    def on_start(self, now: float, *, user_words: int, user_text: str) -> None:
        """A request started at `now` for `user_text`, with `user_words` said so far."""
        self._words_at_start = user_words
        self._text_at_start = words_of(user_text)
        self._answered = False
        self._pending = False
        self._final_pending = False
        self._pause_pending = False
        self._starts.append(now)

    def on_answering(self) -> None:
        """The server answers (a chunk arrived, or the stream completed): the back-off starts over."""
        self._backoff = self.config.backoff_initial_s
        self._retry_at = 0.0

    def on_completed(self) -> None:
        """The current stream completed: its answer stays current until enough new words or a final."""
        self._answered = True

    def on_failed(self, now: float) -> float:
        """A stream failed at `now`: the same text is tried again after the returned back-off, which
        doubles with each failure up to `backoff_max_s`."""
        delay = self._backoff
        self._retry_at = now + delay
        self._backoff = min(self._backoff * 2.0, self.config.backoff_max_s)
        self._pending = True
        return delay
