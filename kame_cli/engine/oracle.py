"""The oracle stream: which token the front-end's oracle input gets at each step (KAME semantics)."""

from __future__ import annotations

from kame_cli.events import OracleAppend, OracleClear, OracleCommand, OracleReset


class OracleStream:
    """Token k of the current oracle is fed at step reset_step + k, or never; padding otherwise.

    Owned by the real-time loop alone: other threads send `OracleCommand`s through its queue.
    A reset starts the stream with the text start token; appends extend it. An append whose
    generation is not the current reset's is a cancelled stream's late chunk and is dropped; a clear
    of the current generation drops its pending tokens (a failed stream).
    """

    def __init__(self, start_id: int, padding_id: int) -> None:
        self.start_id = start_id
        self.padding_id = padding_id
        self.generation: int | None = None
        self.dropped_appends = 0
        self._tokens: list[int] = []
        self._position = 0

    def apply(self, command: OracleCommand) -> None:
        if isinstance(command, OracleReset):
            self.generation = command.generation
            self._tokens = [self.start_id]
            self._position = 0
        elif isinstance(command, OracleAppend):
            if command.generation != self.generation:
                self.dropped_appends += 1
                return
            self._tokens.extend(command.token_ids)
        elif isinstance(command, OracleClear):
            if command.generation == self.generation:
                # Keep what was consumed (the position stays), drop what was still pending.
                del self._tokens[self._position :]
                self.generation = None
        else:
            raise TypeError(f"not an oracle command: {command!r}")

    def next_token(self) -> int:
        """The token for this step. The position advances even when nothing is there to feed,
        so a token appended after its step has passed is skipped, never fed late."""
        position = self._position
        self._position += 1
        if position < len(self._tokens):
            return self._tokens[position]
        return self.padding_id

    @property
    def pending(self) -> int:
        """Tokens appended but not yet reached."""
        return max(0, len(self._tokens) - self._position)
