"""The pages' examples run as written: README.md and docs/*.md, parsed and evaluated by Sybil.

- ```python blocks run in one namespace per page (doctest-style blocks starting with `>>>` have
  their printed results checked);
- ```bash / ```console blocks run their commands with bash: a block whose lines start with `$ `
  is a transcript (each command's output, stdout and stderr together, is compared with the lines
  the page shows under it); any other block runs as one script that must succeed;
- both run in a temporary folder per page, prepared as the repository looks after `make setup`
  (`.venv` = this interpreter's environment, so `source .venv/bin/activate` and the shipped
  photos under `.venv/share/face_perception/test_images` work) and then changed only by the
  page's own earlier examples, in page order;
- shown output is compared by Sybil's doctest checker with ELLIPSIS (`...` matches anything) and
  NUMBER: a number written with d decimals matches within 10^-d (0.9732 means 0.9731-0.9733,
  a box corner 433.47 means 433.46-433.48);
- `<!-- skip: next "needs a ROS 2 distro" -->` before a block skips it with that reason (Sybil's
  own skip directive); test/conftest.py prints the count per reason.
"""
from __future__ import annotations

import doctest
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.evaluators.doctest import NUMBER, OutputChecker
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FLAGS = doctest.ELLIPSIS | NUMBER
COMMAND_TIMEOUT_S = 600


class ShellFailure(AssertionError):
    """A page's shell example failed or printed something else than the page shows."""


def transcript(source: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of a block with `$ ` prompts; a command continues on
    lines ending with a backslash."""
    steps: list[tuple[str, list[str]]] = []
    continuing = False
    for line in source.splitlines():
        if continuing:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
            continuing = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append((line[2:], []))
            continuing = line.endswith("\\")
        elif steps:
            steps[-1][1].append(line)
    return [(cmd, "\n".join(out).strip("\n")) for cmd, out in steps]


def page_environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)  # the commands run this checkout's code
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("VIRTUAL_ENV", None)
    return env


def run_bash(script: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=cwd,
                          env=page_environment(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=COMMAND_TIMEOUT_S)


def evaluate_shell(example) -> None:
    cwd = example.namespace["__workdir__"]
    steps = transcript(example.parsed)
    if not steps:  # a plain script: every command must succeed, output not compared
        done = run_bash(example.parsed, cwd)
        if done.returncode:
            raise ShellFailure(f"exit code {done.returncode} from:\n{example.parsed}\n"
                               f"output:\n{done.stdout}")
        return
    checker = OutputChecker()
    for command, want in steps:
        done = run_bash(command, cwd)
        got = done.stdout.rstrip("\n")
        if done.returncode:
            raise ShellFailure(f"$ {command}\nexit code {done.returncode}; output:\n{got}")
        if not checker.check_output(want + "\n", got + "\n", FLAGS):
            diff = checker.output_difference(doctest.Example(command, want + "\n"), got + "\n",
                                             FLAGS | doctest.REPORT_UDIFF)
            raise ShellFailure(f"$ {command}\n{diff}")


SYBIL = Sybil(
    parsers=[
        SkipParser(),
        PythonCodeBlockParser(doctest_optionflags=FLAGS),
        CodeBlockParser("bash", evaluate_shell),
        CodeBlockParser("console", evaluate_shell),
    ],
    path=str(REPO),
)


def _examples():
    """One test per example, in page order. Skip directives are not tests of their own: each is
    evaluated just before the example that follows it (where it takes effect)."""
    from sybil.evaluators.skip import Skipper

    for page in PAGES:
        rel = page.relative_to(REPO)
        directives: list = []
        last = None
        for example in SYBIL.parse(page).examples():
            if isinstance(example.region.evaluator, Skipper):
                directives.append(example)
                continue
            last = [*directives, example]
            directives = []
            yield pytest.param(last, id=f"{rel}:{example.line}")
        if directives and last is not None:
            last.extend(directives)  # a closing `skip: end` after the page's last example


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory, photos):
    """One prepared working folder per page, created on the page's first example."""
    made: dict = {}

    def for_page(document) -> Path:
        if document.path not in made:
            folder = tmp_path_factory.mktemp(Path(document.path).stem)
            (folder / ".venv").symlink_to(Path(sys.prefix))
            if not (folder / ".venv/share/face_perception/test_images/obama.jpg").is_file():
                # A set-up whose photos live elsewhere (FACE_PERCEPTION_TEST_IMAGES).
                (folder / ".venv").unlink()
                (folder / ".venv").mkdir()
                (folder / ".venv/bin").symlink_to(Path(sys.executable).parent)
                share = folder / ".venv/share/face_perception"
                share.mkdir(parents=True)
                (share / "test_images").symlink_to(photos)
            document.namespace["__workdir__"] = folder
            made[document.path] = folder
        return made[document.path]

    return for_page


@pytest.mark.parametrize("examples", list(_examples()))
def test_page_example(examples, workdirs, monkeypatch):
    monkeypatch.chdir(workdirs(examples[0].document))
    for example in examples:
        example.evaluate()


def test_pages_hold_examples_and_skips_give_reasons():
    """Guards the guard: a parser change that silently finds nothing would pass every page."""
    counts = {}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        counts[page.name] = sum(1 for _ in SYBIL.parse(page).examples())
        for line in text.splitlines():
            if line.startswith("<!-- skip:"):
                action = shlex.split(line[len("<!-- skip:"):].removesuffix("-->"))
                assert action[0] in ("next", "start", "end"), (page.name, line)
                assert action[0] == "end" or len(action) == 2, \
                    f"{page.name}: a skip needs a reason: {line}"
    assert counts["README.md"] >= 3 and sum(counts.values()) >= 40, counts
