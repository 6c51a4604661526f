"""The front-end batched across sessions: B slots of one model stepped together every frame.

Each slot is one conversation's row of the batch, with its own oracle stream (KAME's reset/append
semantics), its own sampling generator and seed (see `rowsampling`), its own rows of Mimi's and the
LM's streaming state, and its own step count. A session that joins resets only its row; a free slot
steps on silence and its output goes nowhere; a slot with no frame at step time steps on silence
(counted as late) and the others never wait for it. A session's tokens at batch B are exactly its
tokens alone at batch 1 with the same seed (tests/engine/test_batch.py).

One thread owns a `BatchedFrontend` (moshi's streaming state is not thread-safe): it calls `join`,
`leave`, `send_oracle` and `step`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kame_cli.clock import FRAME_SAMPLES
from kame_cli.engine.loader import Frontend, Sampling
from kame_cli.engine.loop import _CudaStageTimer, _WallStageTimer
from kame_cli.engine.oracle import OracleStream
from kame_cli.events import OracleCommand

if TYPE_CHECKING:
    import torch
    from moshi.models.lm import LMGen
    from moshi.modules.streaming import State

    from kame_cli.engine.rowsampling import RowNoise

WARMUP_STEPS = 4
"""As the single-session loop: enough for moshi's CUDA graphs (one plain call, then capture)."""
_DECODER_SIDE = ("upsample", "decoder_transformer", "decoder")
"""Mimi's streaming parts that only decoding moves on (a row's are reset while it has no tokens)."""


@dataclass(frozen=True, slots=True)
class SlotOutput:
    """What one slot's session got from one batched step."""

    slot: int
    step: int
    """The session's own step index (0 at the step after it joined)."""
    oracle_token: int
    text_token: int | None
    """None while moshi's delays fill up, as at batch 1."""
    audio_tokens: tuple[int, ...] | None
    """The step's audio codes (one per generated codebook); None while the delays fill up."""
    pcm: np.ndarray
    """`FRAME_SAMPLES` float32 samples at 24 kHz; silence while moshi's delays fill up."""
    late: bool
    """No frame had come for this step: the slot stepped on silence."""


class SlotsFull(RuntimeError):
    """Every slot of the batch is taken."""


@dataclass
class _Slot:
    seed: int
    generator: torch.Generator
    oracle: OracleStream
    steps: int = 0
    late_frames: int = 0


class BatchedFrontend:
    """`slots` sessions of one loaded front-end, stepped together (use inside `with`)."""

    def __init__(
        self,
        frontend: Frontend,
        slots: int,
        *,
        sampling: Sampling | None = None,
        warmup_steps: int = WARMUP_STEPS,
    ) -> None:
        if slots < 1:
            raise ValueError(f"a batch needs at least one slot (got {slots})")
        self.frontend = frontend
        self.slots = slots
        self.sampling = sampling or Sampling()
        self.warmup_steps = warmup_steps
        self.batch_steps = 0
        """Steps of the whole batch since it opened (warm-up not counted)."""
        self._rows: list[_Slot | None] = [None] * slots
        self._stack: contextlib.ExitStack | None = None
        self._lm_gen: LMGen | None = None
        self._noise: RowNoise | None = None
        self._decoder_side: list[State] = []
        self._timer: _WallStageTimer | _CudaStageTimer = _WallStageTimer()
        self.last_stages_ms: tuple[float, float, float] = (0.0, 0.0, 0.0)
        """The last step's encode, LM and decode milliseconds (CUDA events on a GPU)."""

    # --- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> BatchedFrontend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Enter moshi's streaming at batch `slots`, warm up (CUDA graphs at this size), reset."""
        import torch

        from kame_cli.engine import rowsampling

        if self._stack is not None:
            raise RuntimeError("BatchedFrontend.open() called twice")
        rowsampling.install()
        frontend = self.frontend
        lm_gen = frontend.make_lm_gen(self.sampling)
        # Rows start and end at different steps: moshi's per-row offsets decide when a row's tokens
        # are out of the delays, not its one batch-wide step counter.
        lm_gen.support_out_of_sync = True
        stack = contextlib.ExitStack()
        stack.enter_context(frontend.mimi.streaming(self.slots))
        stack.enter_context(lm_gen.streaming(self.slots))
        self._stack = stack
        self._lm_gen = lm_gen
        if frontend.device.type == "cuda":
            self._timer = _CudaStageTimer()
        self._noise = rowsampling.RowNoise(self.slots, rowsampling.sampling_widths(lm_gen), frontend.device)
        mimi = frontend.mimi
        # Per module state, not per top-level part: some parts (the upsampler) are plain modules
        # around a streaming one.
        self._decoder_side = [
            state for name, state in mimi.get_streaming_state().items() if name.split(".")[0] in _DECODER_SIDE
        ]
        try:
            warm = [torch.Generator().manual_seed(row) for row in range(self.slots)]
            silence = np.zeros((self.slots, FRAME_SAMPLES), dtype=np.float32)
            padding = [frontend.text_padding_id] * self.slots
            for _ in range(self.warmup_steps):
                self._forward(silence, padding, warm, first=[False] * self.slots)
            with torch.inference_mode():
                mimi.reset_streaming()
                lm_gen.reset_streaming()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Leave moshi's streaming state (every session in the batch ends)."""
        stack, self._stack = self._stack, None
        self._rows = [None] * self.slots
        if stack is not None:
            stack.close()

    # --- sessions --------------------------------------------------------------------------------

    @property
    def free_slots(self) -> list[int]:
        return [index for index, row in enumerate(self._rows) if row is None]

    @property
    def active_slots(self) -> list[int]:
        return [index for index, row in enumerate(self._rows) if row is not None]

    def join(self, seed: int | None = None) -> int:
        """Take the lowest free slot for a new session and reset its row only; its slot index."""
        import torch

        self._require_open()
        free = self.free_slots
        if not free:
            raise SlotsFull(f"all {self.slots} front-end slots are taken")
        slot = free[0]
        generator = torch.Generator()
        if seed is None:
            seed = generator.seed()
        else:
            generator.manual_seed(seed)
        mask = torch.zeros(self.slots, dtype=torch.bool)
        mask[slot] = True
        # Inference mode, as in every step: the state a step made is an inference tensor, which only
        # inference mode may change in place.
        with torch.inference_mode():
            self.frontend.mimi.reset_streaming(mask)
            assert self._lm_gen is not None
            self._lm_gen.reset_streaming(mask)
        oracle = OracleStream(self.frontend.text_start_id, self.frontend.text_padding_id)
        self._rows[slot] = _Slot(seed, generator, oracle)
        return slot

    def leave(self, slot: int) -> None:
        """Free `slot`; it steps on silence, unused, until the next session joins it."""
        self._slot(slot)
        self._rows[slot] = None

    def send_oracle(self, slot: int, command: OracleCommand) -> None:
        """Apply an oracle reset/append/clear to `slot`'s stream before its next step."""
        self._slot(slot).oracle.apply(command)

    def oracle_stream(self, slot: int) -> OracleStream:
        return self._slot(slot).oracle

    def late_frames(self, slot: int) -> int:
        """Steps `slot` took on silence because its frame had not come."""
        return self._slot(slot).late_frames

    def seed(self, slot: int) -> int:
        return self._slot(slot).seed

    # --- stepping --------------------------------------------------------------------------------

    def step(self, frames: Mapping[int, np.ndarray | None]) -> dict[int, SlotOutput]:
        """One frame for every session: `frames[slot]` (missing or None: late, stepped on silence)."""
        self._require_open()
        unknown = [slot for slot in frames if not 0 <= slot < self.slots or self._rows[slot] is None]
        if unknown:
            raise ValueError(f"frames for slots with no session: {unknown}")
        batch = np.zeros((self.slots, FRAME_SAMPLES), dtype=np.float32)
        late: list[bool] = [False] * self.slots
        oracle: list[int] = [self.frontend.text_padding_id] * self.slots
        generators: list[torch.Generator | None] = [None] * self.slots
        first: list[bool] = [False] * self.slots
        for index, row in enumerate(self._rows):
            if row is None:
                continue
            frame = frames.get(index)
            if frame is None:
                late[index] = True
                row.late_frames += 1
            else:
                samples = np.asarray(frame, dtype=np.float32).reshape(-1)
                if samples.size != FRAME_SAMPLES:
                    raise ValueError(f"slot {index}: a frame is {FRAME_SAMPLES} samples, got {samples.size}")
                batch[index] = samples
            oracle[index] = row.oracle.next_token()
            generators[index] = row.generator
            first[index] = row.steps == 0
        text, audio, pcm = self._forward(batch, oracle, generators, first)
        self.batch_steps += 1
        outputs: dict[int, SlotOutput] = {}
        for index, row in enumerate(self._rows):
            if row is None:
                continue
            outputs[index] = SlotOutput(
                index, row.steps, oracle[index], text[index], audio[index], pcm[index], late[index]
            )
            row.steps += 1
        return outputs

    def _forward(
        self,
        batch: np.ndarray,
        oracle: list[int],
        generators: list[torch.Generator | None],
        first: list[bool],
    ) -> tuple[list[int | None], list[tuple[int, ...] | None], list[np.ndarray]]:
        """Encode, LM step, decode for every row; per row its text token and audio codes (None in the
        delays) and its pcm."""
        import torch

        frontend, lm_gen, noise = self.frontend, self._lm_gen, self._noise
        assert lm_gen is not None and noise is not None
        mimi, device = frontend.mimi, frontend.device
        silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        with torch.inference_mode(), frontend.step_context(), noise.active():
            frontend.lm.set_oracle_tokens(torch.tensor(oracle, dtype=torch.long, device=device))
            noise.draw(generators)
            timer = self._timer
            timer.begin()
            codes = mimi.encode(torch.from_numpy(batch).to(device)[:, None, :])
            if any(first):
                # As at batch 1: a session's first code carries the encoder's left padding, and
                # resetting its Mimi row makes its next frame reapply it.
                mimi.reset_streaming(torch.tensor(first, device=device))
            timer.mark()
            tokens = lm_gen.step(codes)
            timer.mark()
            assert tokens is not None  # support_out_of_sync: always a [B, 1 + dep_q, 1] tensor
            ready = tokens[:, 0, 0] != frontend.lm.ungenerated_token_id
            ready_rows: list[bool] = ready.tolist()
            rows: list[list[int]] = tokens[:, :, 0].tolist()
            text = [row[0] if ok else None for row, ok in zip(rows, ready_rows, strict=True)]
            audio = [tuple(row[1:]) if ok else None for row, ok in zip(rows, ready_rows, strict=True)]
            pcm = [silence.copy() for _ in range(self.slots)]
            if any(ready_rows):
                codes_out = torch.where(ready[:, None, None], tokens[:, 1:], torch.zeros_like(tokens[:, 1:]))
                decoded = mimi.decode(codes_out)[:, 0].to(torch.float32).cpu().numpy()
                pcm = [decoded[row] if ok else pcm[row] for row, ok in enumerate(ready_rows)]
                if not all(ready_rows):
                    # Rows still in the delays decoded placeholders: undo that, so their decoder
                    # starts fresh with their first real tokens, as it does at batch 1.
                    for state in self._decoder_side:
                        state.reset(~ready)
            timer.mark()
            self.last_stages_ms = timer.stages_ms()
        return text, audio, pcm

    def _slot(self, slot: int) -> _Slot:
        if not 0 <= slot < self.slots or self._rows[slot] is None:
            raise ValueError(f"front-end slot {slot} has no session")
        row = self._rows[slot]
        assert row is not None
        return row

    def _require_open(self) -> None:
        if self._stack is None:
            raise RuntimeError("BatchedFrontend is not open: use it inside `with BatchedFrontend(...)`")
