"""Examples that cannot rot: every ``seqcls`` command in the README's and docs' code blocks and in ``--help`` parses
with the real parser, every relative link and anchor resolves, and the runnable Python blocks run against the demo
checkpoints."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from converter.cli import EXAMPLES, build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*([./:-][A-Z0-9_]+)*$")
"""``CONVERTED``, ``ORG/NAME``, ``X.Y``: a value the reader fills in."""
COMMAND = re.compile(r"^(?:\$ )?(?:[A-Z_]+=\S+ )*(?:\.venv/bin/)?(?:seqcls|python -m converter) ")


def code_blocks(page: Path) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def commands(text: str) -> list[str]:
    """The arguments of each ``seqcls ...`` line of a shell block, continuation lines joined, comments dropped."""
    found = []
    for line in re.sub(r"\\\n\s*", " ", text).splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if match := COMMAND.match(line):
            found.append(line[match.end() :])
    return found


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for info, body in code_blocks(page):
            if info in ("", "bash", "sh", "console", "text"):
                found += [(page.name, c) for c in commands(body)]
    for name, text in EXAMPLES.items():
        found += [(f"--help of {name}", c) for c in commands(text)]
    return found


def _actions(parser: argparse.ArgumentParser, command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]._option_string_actions


def concrete(argv: list[str], parser: argparse.ArgumentParser) -> list[list[str]]:
    """A command or a synopsis (``[--device cpu|cuda|npu]``) as commands to parse, one per alternative;
    placeholders of typed or restricted options take a valid value."""
    argv = [a.strip("[]") for a in argv if a.strip("[]") not in ("", "...")]
    argv = argv[: argv.index("--")] if "--" in argv else argv  # the rest goes to vllm serve unparsed
    actions = _actions(parser, argv[0]) if argv and not argv[0].startswith("-") else {}
    variants = [argv]
    for i, word in enumerate(argv):
        action = actions.get(argv[i - 1]) if i else None
        if "|" in word and action is not None and action.choices:
            assert set(word.split("|")) <= set(action.choices), f"{argv[i - 1]} {word}: not all valid choices"
            variants = [[*v[:i], choice, *v[i + 1 :]] for v in variants for choice in word.split("|")]
        elif PLACEHOLDER.match(word) and action is not None and (action.choices or action.type in (int, float)):
            value = str(next(iter(action.choices))) if action.choices else "1"
            variants = [[*v[:i], value, *v[i + 1 :]] for v in variants]
    return variants


DOCUMENTED = documented_commands()


def test_the_docs_show_every_subcommand():
    shown = {shlex.split(c)[0] for _, c in DOCUMENTED}
    assert shown >= {"convert", "verify", "serve", "publish", "inspect", "demo"}, shown
    assert len(DOCUMENTED) >= 30


@pytest.mark.parametrize(("where", "command"), DOCUMENTED, ids=[f"{w}: {c[:60]}" for w, c in DOCUMENTED])
def test_documented_command_parses(where, command):
    parser = build_parser()
    for variant in concrete(shlex.split(command), parser):
        try:
            parser.parse_args(variant)
        except SystemExit as e:
            pytest.fail(f"{where}: `seqcls {' '.join(variant)}` does not parse (exit {e.code})")


def test_a_wrong_command_is_caught():
    """Planted fault: a renamed flag."""
    parser = build_parser()
    with pytest.raises(SystemExit):
        for variant in concrete(shlex.split("verify CONVERTED --original SRC --engine vllm"), parser):
            parser.parse_args(variant)
    with pytest.raises(AssertionError):
        concrete(shlex.split("serve CONVERTED [--device cpu|gpu]"), parser)


def test_every_help_ends_with_examples(capsys):
    for command in [[], *(["export", name] if name == "frames" else [name] for name in EXAMPLES if name != "seqcls")]:
        with pytest.raises(SystemExit):
            build_parser().parse_args([*command, "--help"])
        text = capsys.readouterr().out
        tail = text[text.rindex("examples:") :].splitlines()[1:]
        assert 2 <= len([line for line in tail if line.startswith("  seqcls ")]) <= 3, command


HELP_COMMANDS = [[], *([name] for name in EXAMPLES if name not in ("seqcls", "export", "frames")), ["export"],
                 ["export", "gguf"], ["export", "frames"]]  # fmt: skip
USERS_WORDS = {"hf_overrides", "query_id", "document_id"}
"""Names with an underscore that users write themselves: vLLM's option, the pair file's fields."""


def _parsers(parser) -> list:
    import argparse

    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "seqcls")
def test_every_help_opens_with_what_the_command_does_for_a_user(capsys, command):
    """After the usage lines, a sentence for users: capitalised, a full stop at its end."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    opening = capsys.readouterr().out.split("\n\n", 1)[1].split("\n\n", 1)[0]
    assert opening[0].isupper() or opening.startswith("seqcls "), opening
    assert opening.rstrip().endswith(".") and len(opening.split()) >= 8, opening


def test_help_texts_have_no_markup_or_internal_names():
    """Descriptions and option help are prose for users: no reST markup, no module or function names of the package
    (lowercase names with underscores), no file names of its code."""
    texts = []
    for parser in _parsers(build_parser()):
        texts.append(parser.description or "")
        texts += [action.help or "" for action in parser._actions]
        texts += [choice.help or "" for action in parser._actions for choice in getattr(action, "_choices_actions", [])]
    for text in texts:
        assert not re.search(r"``|:(func|class|meth|mod):|converter[./]|\.py\b", text), text
        internal = set(re.findall(r"\b[a-z]+(?:_[a-z0-9]+)+\b", text)) - USERS_WORDS
        assert not internal, (internal, text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lowercased, punctuation dropped, spaces to hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        seen[slug] = seen.get(slug, -1) + 1
        if seen[slug]:
            seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_anchors_resolve(page):
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor:
            assert anchor in _anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_a_broken_anchor_is_caught(tmp_path):
    """Planted fault."""
    page = tmp_path / "page.md"
    page.write_text("# Title: one\n\nSee [here](#title-two) and [there](#title-one).\n")
    assert _anchors(page) == {"title-one"} and links(page) == ["#title-two", "#title-one"]


def test_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    first = code_blocks(ROOT / "README.md")[0][1].splitlines()
    assert [line.split()[0] for line in first] == ["scripts/demo", "scripts/test"]


RUNNABLE = [(page, body) for page in PAGES for info, body in code_blocks(page) if info == "python runnable"]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """The checkpoints ``scripts/demo`` leaves, in a folder of their own: the runnable blocks' working directory."""
    from converter.cli import run

    folder = tmp_path_factory.mktemp("docs-demo")
    assert run(["demo", "--workdir", str(folder / "converted")]) == 0
    return folder


@pytest.mark.slow  # inner loop: see docs/testing.md
@pytest.mark.parametrize(("page", "code"), RUNNABLE, ids=[f"{p.name}-{i}" for i, (p, _) in enumerate(RUNNABLE)])
def test_runnable_python_blocks_run_against_the_demo(demo_dir, page, code):
    result = subprocess.run([sys.executable, "-c", code], cwd=demo_dir, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{page.name}:\n{code}\n{result.stderr[-3000:]}"


def test_there_are_runnable_blocks():
    assert len(RUNNABLE) >= 2
