"""The README tells the truth: every command it shows names a real module, real flags and real files, and is run
by a test or by CI (``.ci/newcomer``, which runs ``scripts/demo.sh``) — or says on its line why CI cannot run it
(``# not in CI: ...``)."""

import json
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOT_IN_CI = "# not in CI:"
_LIST_FLAGS = """
import importlib, json, sys
from absl import flags
found = {}
for module in sys.argv[1:]:
    before = set(flags.FLAGS)
    imported = importlib.import_module(module)
    if hasattr(imported, "_define_flags"):
        imported._define_flags()
    found[module] = sorted(set(flags.FLAGS) - before)
    for name in found[module]:
        delattr(flags.FLAGS, name)  # the next command may define a flag of the same name
print(json.dumps(found))
"""


def _python_m(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """(module, arguments) of each ``python -m uniflow_jax.*`` in a shell line's tokens (also inside a quoted
    ``--command "..."``); optional parts shown as ``[--flag value]`` count as given."""
    found = []
    for i, token in enumerate(tokens):
        if token == "python" and tokens[i + 1 : i + 2] == ["-m"] and tokens[i + 2].startswith("uniflow_jax"):
            args = []
            for arg in tokens[i + 3 :]:
                if arg in ("&&", "||", "|", ";"):
                    break
                args.append(arg.strip("[]"))
            found.append((tokens[i + 2], args))
        elif "python -m uniflow_jax" in token:
            found += _python_m(shlex.split(token))
    return found


def readme_commands() -> list[tuple[str, str, list[str]]]:
    """(line, module, arguments) of every ``python -m uniflow_jax.<module>`` in the README's code blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            for module, args in _python_m(shlex.split(line, comments=True)):
                commands.append((line.strip(), module, args))
    return commands


@pytest.fixture(scope="module")
def commands() -> list[tuple[str, str, list[str]]]:
    found = readme_commands()
    assert len(found) >= 20, f"the README's commands were not found ({len(found)})"
    return found


def test_every_command_names_a_real_module_flags_and_files(commands):
    modules = sorted({module for _, module, _ in commands})
    result = subprocess.run(
        [sys.executable, "-c", _LIST_FLAGS, *modules], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    defined = json.loads(result.stdout.splitlines()[-1])
    problems = []
    for line, module, args in commands:
        for arg in args:
            if arg.startswith("--") and not arg.startswith("--config."):
                name = arg[2:].split("=")[0].replace("-", "_")
                if name not in defined[module] and not (name.startswith("no") and name[2:] in defined[module]):
                    problems.append(f"{module}: no flag --{name} (README: {line})")
            elif (
                arg.startswith(("configs/", "scripts/")) and "<" not in arg and not (REPO / arg.split(":")[0]).exists()
            ):
                problems.append(f"{module}: no file {arg} (README: {line})")
    assert not problems, "\n".join(problems)


def test_every_command_is_run_by_a_test_or_ci_or_says_why_not(commands):
    runners = [p for p in REPO.glob("tests/**/*.py") if p.name != "test_readme.py"] + [
        REPO / ".ci/newcomer",
        REPO / "scripts/demo.sh",
        REPO / "scripts/train_demo_codec.sh",  # run by tests/demo/test_report.py
    ]
    text = "\n".join(p.read_text() for p in runners)
    unrun = []
    for line, module, _ in commands:
        short = module.removeprefix("uniflow_jax.")
        ran = f'"{module}"' in text or f"{module} " in text or re.search(rf"\b{short}\.main\(", text)
        if not ran and NOT_IN_CI not in line:
            unrun.append(line)
    assert not unrun, "README commands that nothing runs (run them in a test, or mark them '# not in CI: why'):\n" + (
        "\n".join(unrun)
    )


def test_quickstart_is_the_demo_then_the_tests():
    quickstart = (REPO / "README.md").read_text().split("## Quickstart", 1)[1].split("```bash\n", 1)[1]
    lines = [line for line in quickstart.split("```")[0].splitlines() if line and not line.startswith("#")]
    assert lines == ["bash scripts/demo.sh demo_out", 'pip install -e ".[test,video,tpu]" && python -m pytest']
    assert "bash scripts/demo.sh" in (REPO / ".ci/newcomer").read_text().replace('"$REPO/', "")


def test_the_tpu_tables_are_the_scripts_rendering_of_the_kept_rows(tmp_path):
    """The README's TPU tables are what ``scripts/tpu_tables.py`` makes of the rows in docs/tpu_plans (no hand
    edits, no row without its JSON): re-rendered from them, the README does not change."""
    readme = tmp_path / "README.md"
    readme.write_text((REPO / "README.md").read_text())
    done = subprocess.run(
        [sys.executable, "scripts/tpu_tables.py", "--render_only", f"--readme={readme}"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert readme.read_text() == (REPO / "README.md").read_text()
