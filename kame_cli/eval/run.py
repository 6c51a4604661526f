"""`kame eval` from start to end: check the input, run the sessions, the cascade and the judge
(each question x setup once, cached in `--out`), then the table, `--json` and the figure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kame_cli.errors import ConfigError, printable
from kame_cli.eval.answers import TurnAnswer, answers_from_json, answers_to_json
from kame_cli.eval.cache import ANSWERS, JUDGED, EvalDir
from kame_cli.eval.judge import Judge, Judgment
from kame_cli.eval.progress import EvalProgress
from kame_cli.eval.questions import Question, bundled_questions, load_questions
from kame_cli.eval.report import JudgedAnswer, SetupReport, print_table
from kame_cli.eval.runner import SessionFailed, SessionOptions, run_session, write_input
from kame_cli.eval.setups import FRONTEND, Setup, plan_setups
from kame_cli.eval.speech import check_voice, spoken_turns

if TYPE_CHECKING:
    from kame_cli.eval.extract import OutputTranscriber
    from kame_cli.profiles import Profile


@dataclass(frozen=True)
class EvalOptions:
    """What `kame eval` was asked."""

    questions: Path | None
    profiles: Sequence[str]
    frontend_only: bool
    cascade: bool
    judge: str | None
    voice: str
    out: Path
    as_json: bool
    figure: Path | None
    model: str | None
    gap_s: float
    fast: bool
    seed: int
    judge_timeout_s: float
    limit: int | None
    knowledge: bool = False
    """Each tandem whose profile names documents also runs without them (`eval/knowledge.py`)."""


class Evaluation:
    """One `kame eval` run over the questions and setups; `run()` returns the exit code."""

    def __init__(self, opts: EvalOptions) -> None:
        from kame_cli.eval.figure import check_figure_path
        from kame_cli.profiles import check_profile, load_profile

        # Everything the user can get wrong is checked here, before anything is written.
        self.opts = opts
        source = opts.questions if opts.questions is not None else bundled_questions()
        questions = load_questions(source)
        self.questions = questions[: opts.limit] if opts.limit is not None else questions
        if opts.figure is not None:
            check_figure_path(opts.figure)
        if opts.out.exists() and not opts.out.is_dir():
            raise ConfigError(
                f"--out {printable(str(opts.out))}: not a folder: give a folder for the cached results"
            )
        specs = list(opts.profiles) or ["offline"]
        self.profiles: dict[str, Profile] = {spec: load_profile(spec) for spec in specs}
        self.judge_spec = opts.judge or specs[0]
        self.judge_profile = self.profiles.get(self.judge_spec) or load_profile(self.judge_spec)
        for profile in [*self.profiles.values(), self.judge_profile]:
            check_profile(profile, online=False)  # an unset key or a missing GGUF: one line now
        self.setups = plan_setups(
            [(spec, p.name) for spec, p in self.profiles.items()],
            frontend_only=opts.frontend_only,
            cascade=opts.cascade,
        )
        self._plain_profiles: dict[Path, Profile] = {}
        if opts.knowledge:
            from kame_cli.eval.knowledge import pair_with_plain

            self.setups, self._plain_profiles = pair_with_plain(self.setups, self.profiles, opts.out)
        check_voice(opts.voice, self.questions)
        self.first = self.profiles[specs[0]]
        self.cache = EvalDir(opts.out)
        self.session_opts = SessionOptions(opts.model, opts.gap_s, opts.fast, opts.seed)
        self.failed: dict[str, list[str]] = {s.name: [] for s in self.setups}
        self._transcriber: OutputTranscriber | None = None
        self.out = sys.stderr if opts.as_json else sys.stdout

    # --- the work, in three passes ---------------------------------------------------------------

    def session_settings(self) -> dict[str, Any]:
        """What shapes every session's answers: a cached folder holds answers made with these only."""
        opts = self.opts
        return {
            "model": opts.model,
            "gap_s": opts.gap_s,
            "fast": opts.fast,
            "seed": opts.seed,
            "voice": opts.voice,
        }

    def session_setups(self) -> list[Setup]:
        """The sessions to run per question: those of the setups, and the front-end alone for a cascade."""
        sessions = [s for s in self.setups if s.kind != "cascade"]
        if any(s.kind == "cascade" for s in self.setups) and not any(s.name == FRONTEND for s in sessions):
            sessions.insert(0, Setup(FRONTEND, "frontend", self.first.path.as_posix()))
        return sessions

    def run(self) -> int:
        self.cache.check_settings(self.session_settings())
        if self._plain_profiles:
            from kame_cli.eval.knowledge import write_plain

            write_plain(self._plain_profiles)
        sessions = self.session_setups()
        cascades = [s for s in self.setups if s.kind == "cascade"]
        total = len(self.questions) * (len(sessions) + len(cascades) + len(self.setups))
        print(
            f"kame eval: {len(self.questions)} questions x {', '.join(s.name for s in self.setups)}; judge "
            f"{self.judge_profile.name}; voice {self.opts.voice}; "
            f"{'fast' if self.opts.fast else 'real-time'} sessions; results in {self.opts.out}",
            file=sys.stderr,
        )
        from kame_cli.session.template import templates_for_children

        with EvalProgress(total, sys.stderr) as progress:
            with templates_for_children():  # each session's children: forks, not fresh imports
                for question in self.questions:
                    self._sessions(question, sessions, progress)
            todo_cascade = [q for q in self.questions for s in cascades if self._needs(q, s, ANSWERS)]
            todo_judge = [(q, s) for q in self.questions for s in self.setups if self._needs(q, s, JUDGED)]
            with self._llm_backends(bool(todo_cascade), bool(todo_judge)) as bases:
                asyncio.run(self._llm_passes(cascades, bases, progress))
        return self._report()

    def _needs(self, question: Question, setup: Setup, name: str) -> bool:
        """Whether that file is missing, or was made for another question text or another judge."""
        data = self.cache.read(question.id, setup.name, name)
        if name == JUDGED:
            return (
                not isinstance(data, dict) or data.get("judge_model") != self.judge_profile.llm.litellm_model
            )
        answers = answers_from_json(data)
        return answers is None or [a.question for a in answers] != list(question.turns[: len(answers)])

    def _sessions(self, question: Question, sessions: Sequence[Setup], progress: EvalProgress) -> None:
        todo = [s for s in sessions if self._needs(question, s, ANSWERS)]
        for setup in sessions:
            if setup not in todo:
                progress.advance(f"{question.id} {setup.name}: session cached")
        if not todo:
            return
        with tempfile.TemporaryDirectory(prefix="kame-eval-") as tmp:
            wav = Path(tmp) / f"{question.id}.wav"
            spans = write_input(spoken_turns(question, self.opts.voice), question.turns, self.opts.gap_s, wav)
            duration = spans[-1][1] + 1.0
            for setup in todo:
                progress.start(f"{question.id} {setup.name}")
                log_dir = self.cache.fresh_log_dir(question.id, setup.name)
                try:
                    run_session(setup, wav, log_dir, duration, self.session_opts)
                    answers = self._read_answers(log_dir, question, spans)
                except ConfigError as err:
                    if (log_dir / "events.jsonl").is_file():
                        raise  # the session refused its input: the user's to fix
                    # Ended with no log (stopped by a signal while loading): a failure, retried.
                    progress.note(f"  {question.id} {setup.name}: session left no log: {err}")
                    self.failed.setdefault(setup.name, []).append(question.id)
                    progress.advance(f"{question.id} {setup.name}: session failed")
                    continue
                except SessionFailed as err:
                    progress.note(f"  {question.id} {setup.name}: session failed: {err}")
                    self.failed.setdefault(setup.name, []).append(question.id)
                    progress.advance(f"{question.id} {setup.name}: session failed")
                    continue
                self._store_answers(question, setup, answers_to_json(answers))
                progress.advance(f"{question.id} {setup.name}: session done")

    def _store_answers(self, question: Question, setup: Setup, data: dict[str, Any]) -> None:
        """New answers: what was judged, or answered, from the old ones is stale and goes."""
        stale = [setup.name]
        if setup.kind == "frontend":
            stale += [s.name for s in self.setups if s.kind == "cascade"]
            for name in stale[1:]:
                self.cache.remove(question.id, name, ANSWERS)
        for name in stale:
            self.cache.remove(question.id, name, JUDGED)
        self.cache.write(question.id, setup.name, ANSWERS, data)

    def _read_answers(self, log_dir: Path, question: Question, spans: Any) -> list[TurnAnswer]:
        from kame_cli.eval.extract import OutputTranscriber, session_answers

        if self._transcriber is None:
            self._transcriber = OutputTranscriber(self.first.stt)
        return session_answers(
            log_dir,
            question.turns,
            spans,
            paced=not self.opts.fast,
            end_silence_ms=self.first.stt.end_silence_ms,
            transcriber=self._transcriber,
        )

    @contextlib.contextmanager
    def _llm_backends(self, cascade: bool, judge: bool) -> Iterator[dict[str, str | None]]:
        """The api_base of each profile's LLM that has work to do (a local server started once)."""
        from kame_cli.profiles import check_environment, prepare_llm_backend

        wanted: dict[str, Profile] = {}
        if cascade:
            wanted[str(self.first.path)] = self.first
        if judge:
            wanted[str(self.judge_profile.path)] = self.judge_profile
        bases: dict[str, str | None] = {}
        with contextlib.ExitStack() as stack:
            for key, profile in wanted.items():
                check_environment(profile)
                bases[key] = stack.enter_context(prepare_llm_backend(profile))
            yield bases

    async def _llm_passes(
        self, cascades: Sequence[Setup], bases: dict[str, str | None], progress: EvalProgress
    ) -> None:
        clients: list[Any] = []
        try:
            for setup in cascades:
                await self._cascade_pass(setup, bases, progress, clients)
            await self._judge_pass(bases, progress, clients)
        finally:
            for client in clients:
                await client.close()

    async def _cascade_pass(
        self, setup: Setup, bases: dict[str, str | None], progress: EvalProgress, clients: list[Any]
    ) -> None:
        from kame_cli.backends.oracle.llm import LlmClient
        from kame_cli.eval.cascade import cascade_answers

        client: LlmClient | None = None
        for question in self.questions:
            if not self._needs(question, setup, ANSWERS):
                progress.advance(f"{question.id} {setup.name}: cascade cached")
                continue
            heard = answers_from_json(self.cache.read(question.id, FRONTEND, ANSWERS))
            if heard is None:  # its front-end session failed: nothing was heard to answer
                self.failed[setup.name].append(question.id)
                progress.advance(f"{question.id} {setup.name}: no session to answer")
                continue
            if client is None:
                client = LlmClient(self.first.llm, bases[str(self.first.path)])
                clients.append(client)
            progress.start(f"{question.id} {setup.name}")
            answers, note = await cascade_answers(client, self.first.prompt, heard)
            if note:
                progress.note(f"  {question.id} {setup.name}: {note}")
            self._store_answers(question, setup, answers_to_json(answers, note=note))
            progress.advance(f"{question.id} {setup.name}: cascade answered")

    async def _judge_pass(
        self, bases: dict[str, str | None], progress: EvalProgress, clients: list[Any]
    ) -> None:
        judge: Judge | None = None
        for question in self.questions:
            for setup in self.setups:
                if not self._needs(question, setup, JUDGED):
                    progress.advance(f"{question.id} {setup.name}: judged (cached)")
                    continue
                answers = answers_from_json(self.cache.read(question.id, setup.name, ANSWERS))
                if answers is None:
                    progress.advance(f"{question.id} {setup.name}: nothing to judge")
                    continue
                if judge is None:
                    judge = Judge(
                        self.judge_profile.llm, bases[str(self.judge_profile.path)], self.opts.judge_timeout_s
                    )
                    clients.append(judge.client)
                progress.start(f"{question.id} {setup.name}: judging")
                judged = await self._judge(judge, question, setup, answers)
                self.cache.write(question.id, setup.name, JUDGED, judged)
                progress.advance(f"{question.id} {setup.name}: judged")

    async def _judge(
        self, judge: Judge, question: Question, setup: Setup, answers: Sequence[TurnAnswer]
    ) -> dict[str, Any]:
        voice: list[dict[str, Any]] = []
        oracle: list[dict[str, Any]] | None = [] if setup.kind == "tandem" else None
        for a in answers:
            reference = question.reference(a.turn)
            history = [(b.question, b.voice_text) for b in answers if b.turn < a.turn]
            rated = await judge.rate(a.question, a.voice_text, history, reference)
            voice.append(rated.to_json())
            if oracle is not None:
                history = [(b.question, b.oracle_text) for b in answers if b.turn < a.turn]
                oracle.append((await judge.rate(a.question, a.oracle_text, history, reference)).to_json())
        if setup.kind == "cascade":
            oracle = voice  # its reply is the LLM's own answer: one text, one rating
        model = self.judge_profile.llm.litellm_model
        return {"judge": judge.where, "judge_model": model, "voice": voice, "oracle": oracle}

    # --- the report ---------------------------------------------------------------------------------

    def _report(self) -> int:
        reports = [self._setup_report(setup) for setup in self.setups]
        figures = [r.figures() for r in reports]
        say = self._say
        say("")
        print_table(figures, say)
        if self.opts.fast:
            say("--fast: sessions ran ahead of real time: latencies are not a user's, replies are cut short")
        if self.opts.figure is not None:
            from kame_cli.eval.figure import save

            save(
                figures,
                self.opts.figure,
                f"kame eval · {len(self.questions)} questions · judge {self.judge_profile.name}",
            )
            say(f"figure: {self.opts.figure}")
        if self.opts.as_json:
            print(
                json.dumps(
                    {
                        "questions": len(self.questions),
                        "judge": self.judge_profile.name,
                        "voice": self.opts.voice,
                        "fast": self.opts.fast,
                        "out": str(self.opts.out),
                        "setups": figures,
                    }
                )
            )
        failed = any(r.failed_questions for r in reports)
        return 1 if failed else 0

    def _say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def _setup_report(self, setup: Setup) -> SetupReport:
        report = SetupReport(setup, failed_questions=sorted(set(self.failed.get(setup.name, []))))
        for question in self.questions:
            answers = answers_from_json(self.cache.read(question.id, setup.name, ANSWERS))
            judged = self.cache.read(question.id, setup.name, JUDGED)
            stale = self._needs(question, setup, ANSWERS) or self._needs(question, setup, JUDGED)
            if answers is None or not isinstance(judged, dict) or stale:
                if question.id not in report.failed_questions:
                    report.failed_questions.append(question.id)
                continue
            oracle = judged.get("oracle")
            for i, answer in enumerate(answers):
                report.rows.append(
                    JudgedAnswer(
                        question.id,
                        question.category,
                        answer,
                        Judgment.from_json(judged["voice"][i]),
                        Judgment.from_json(oracle[i]) if oracle is not None else None,
                    )
                )
        return report


def run_eval(opts: EvalOptions) -> int:
    """The whole command; its exit code (130 after Ctrl-C, once every child has stopped)."""
    evaluation = Evaluation(opts)
    try:
        return evaluation.run()
    except KeyboardInterrupt:
        # Typer turns an interrupt into a silent exit 130; say it, as `kame talk` does.
        print("kame: interrupted", file=sys.stderr)
        return 130
