"""The doc runner's reading of pages and its comparison of shown and printed outputs."""
from __future__ import annotations

from pathlib import Path

from docrun import Page, align, close, parse


def test_numbers_compare_to_their_shown_precision() -> None:
    assert close("-9.754", "-9.755", 0.0) and not close("-9.754", "-9.760", 0.0)
    assert close("50.95", "50.97", 0.0) and not close("50.95", "51.0", 0.0)
    assert close("1.049e-08", "1.05e-08", 0.0)
    assert close("4598.2", "4600.0", 5e-3) and not close("4598.2", "4700.0", 5e-3)
    assert close("1000", "1000", 0.5) and not close("1000", "1001", 0.5)  # integers are exact


def test_lines_match_by_text_and_numbers() -> None:
    shown = ["log marginal likelihood -9.754 (se 0.035)", "mass   50.95   1.017"]
    assert align(shown, ["log marginal likelihood -9.755 (se 0.035)", "mass      50.95  1.017"], 5e-3)
    assert align(shown, ["log marginal likelihood -9.754 (se 0.035)", "mass   50.95   1.017", "more"], 5e-3) is None
    assert align(shown, ["log evidence -9.754 (se 0.035)", "mass   50.95   1.017"], 5e-3) is None
    assert align(shown, ["log marginal likelihood -8.1 (se 0.035)", "mass   50.95   1.017"], 5e-3) is None
    assert align(["trained in 1.8 s"], ["trained in 7.25 s"], 5e-3)  # durations are not compared


def test_dots_stand_for_any_lines() -> None:
    printed = ["a 1", "b 2", "c 3", "d 4"]
    assert align(["a 1", "...", "d 4"], printed, 0.0) == [0, None, 3]
    assert align(["...", "c 3", "..."], printed, 0.0) == [None, 2, None]
    assert align(["...", "c 9", "..."], printed, 0.0) is None
    assert align(["a 7", "..."], printed, None) == [0, None]


def test_a_page_runs_and_its_outputs_are_checked(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Save as `m.ppl`:\n\n``` file=m.ppl\nmodel m():\n    x ~ normal(0.0, 1.0)\n```\n\n"
                    "```\npplang check m.ppl\n```\n\n```\nm.ppl: ok (1 declaration: model m)\n```\n\n"
                    "```python\nprint(1 + 1)\n```\n\n```\n3\n```\n\n"
                    "``` norun\npplang infer FILE --model M\n```\n")
    blocks = parse(page.read_text())
    assert [b.kind for b in blocks] == ["file", "command", "text", "python", "text", "norun"]
    work = tmp_path / "work"
    work.mkdir()
    outcomes = Page(page, work).run()
    assert [o.block.kind for o in outcomes] == ["command", "python"]
    assert not outcomes[0].problems and outcomes[0].output.startswith("m.ppl: ok")
    assert len(outcomes[1].problems) == 1 and "differs from a real run" in outcomes[1].problems[0]


def test_an_error_the_page_does_not_show_is_a_failure(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```\npplang check missing.ppl\n```\n\n```python\nraise ValueError('no')\n```\n")
    work = tmp_path / "work"
    work.mkdir()
    command, python = Page(page, work).run()
    assert "exited with 1" in command.problems[0] and "ValueError: no" in python.problems[0]
