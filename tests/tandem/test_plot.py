"""`kame plot` on a real session log: the file, and the panels the figure holds."""

from __future__ import annotations

from matplotlib.collections import LineCollection
from matplotlib.image import imread

from kame_cli.events import DeadlineMiss, OracleFed, OracleRequestStarted
from kame_cli.plot.timeline import PANELS, draw_session
from kame_cli.session.record import read_session
from tests.tandem.conftest import QUESTIONS, BenchRun, run_kame


def test_plot_command_writes_a_png(bench_run: BenchRun, tmp_path) -> None:
    target = tmp_path / "session.png"
    done = run_kame("plot", str(bench_run.log_dir), "-o", str(target), timeout=120)
    assert done.returncode == 0, done.stderr
    pixels = imread(target)
    height, width = pixels.shape[:2]
    assert width >= 1200 and height >= 1200
    assert pixels[..., :3].std() > 0.05  # drawn, not a blank canvas


def test_figure_has_every_panel_with_the_sessions_content(bench_run: BenchRun, tmp_path) -> None:
    record = read_session(bench_run.log_dir)
    fig = draw_session(bench_run.log_dir, tmp_path / "session.svg")
    assert (tmp_path / "session.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    axes = fig.axes
    assert [ax.get_title(loc="left") for ax in axes] == list(PANELS)
    audio, transcript, oracle, fed, words, steps = axes
    # The cascade's timings saved with the session appear as marks on the audio panel.
    labels = [t.get_text() for t in audio.texts]
    assert sum(label.startswith("(c) cascade") for label in labels) == len(QUESTIONS)
    assert sum(label.startswith("(a) informed") for label in labels) == len(QUESTIONS)
    assert any(t.get_text().startswith("final: ") for t in transcript.texts)
    # One bar per oracle request, one bar per fed answer token.
    assert len(oracle.patches) == len(record.of_type(OracleRequestStarted))
    fed_lines = sum(len(c.get_segments()) for c in fed.collections if isinstance(c, LineCollection))
    starts = sum(1 for line in fed.lines if line.get_marker() == "*")
    assert fed_lines + starts == len(record.of_type(OracleFed))
    assert words.texts, "the front-end's words are written out"
    step_line = steps.lines[0]
    assert len(step_line.get_xdata()) == len(record.steps)
    assert any(line.get_ydata()[0] == 80.0 for line in steps.lines[1:2])
    misses = record.of_type(DeadlineMiss)
    assert f"{len(misses)} misses" in steps.texts[0].get_text()
