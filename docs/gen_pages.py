"""Pages generated while the site builds (run by mkdocs-gen-files, see mkdocs.yml).

* ``reference/*.md`` -- one API page per public module, rendered by mkdocstrings;
* ``cli.md`` -- every subcommand's ``--help``, taken from the argparse parser itself;
* ``results.md`` -- the measured tables, cut out of README.md (one source for the numbers);
* ``tutorials/*.md`` -- each script under tutorials/: its docstring as the text, its source,
  and what it printed (and plotted) when run with ``--smoke`` for this build. Runs are cached
  under ``.cache/docs/`` keyed by the tutorial's and the package's source, so a rebuild
  without changes does not run them again;
* ``SUMMARY.md`` -- the navigation (mkdocs-literate-nav).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
CACHE = ROOT / ".cache" / "docs"
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))

# (page title, module): the public API, layer by layer (bottom first)
REFERENCE = [
    ("Coding", "spikeconverter.coding"),
    ("Neuron for Norse (plugin)", "spikeconverter.plugin"),
    ("Neuron for Lava (processes)", "spikeconverter.processes"),
    ("Converters", "spikeconverter.converters"),
    ("Models", "spikeconverter.models"),
    ("Baselines", "spikeconverter.baselines"),
    ("Training", "spikeconverter.training"),
    ("Evaluation", "spikeconverter.evaluation"),
    ("NIR export", "spikeconverter.export"),
    ("Plotting", "spikeconverter.plotting"),
    ("Reporting", "spikeconverter.reporting"),
    ("Data", "spikeconverter.data"),
    ("Model specifications", "spikeconverter.modelspec"),
]
# sections of README.md shown on the results page, in this order
RESULTS = ["Measured", "Fine-tuning at very low T"]


def write(path: str, text: str) -> None:
    with mkdocs_gen_files.open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------------------------
# API reference


def reference_pages() -> list[tuple[str, str]]:
    """One page per module of :data:`REFERENCE`; returns (title, path) for the nav."""
    out = []
    for title, module in REFERENCE:
        path = f"reference/{module.rsplit('.', 1)[-1]}.md"
        write(path, f"# {title}\n\n::: {module}\n")
        out.append((title, path))
    return out


def module_pages() -> list[tuple[str, str]]:
    """A page for every other module of the package (where the public names are defined,
    and the internals that docstrings refer to); returns (module, path) for the nav."""
    curated = {m for _, m in REFERENCE}
    out = []
    for f in sorted((SRC / "spikeconverter").rglob("*.py")):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        module = ".".join(parts)
        if module in curated or module == "spikeconverter" or any(
                p.startswith("_") for p in parts):
            continue
        path = f"reference/modules/{module}.md"
        # internals: undocumented constants are shown too, docstrings refer to them
        write(path, f"# `{module}`\n\n::: {module}\n    options:\n"
                    "      show_root_heading: false\n      show_if_no_docstring: true\n")
        out.append((module, path))
    return out


# --------------------------------------------------------------------------------------------
# CLI reference


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser's subcommands by name (argparse keeps them on its subparsers action)."""
    for action in parser._actions:  # argparse has no public accessor for subparsers
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_text(parser: argparse.ArgumentParser) -> str:
    """``--help`` of ``parser`` at 80 columns (independent of the terminal)."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # the width of the page's code column
    try:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            parser.print_help()
        return buf.getvalue()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_page() -> None:
    from spikeconverter.cli import build_parser

    parser = build_parser()
    parts = ["# Command line\n",
             "Generated from the `spikeconverter` argument parser when this site was built: "
             "the text is exactly what `--help` prints.\n",
             "```text\n$ spikeconverter --help\n" + help_text(parser) + "```\n"]
    for name, sub in subcommands(parser).items():
        parts.append(f"## `spikeconverter {name}`\n")
        parts.append(f"```text\n$ spikeconverter {name} --help\n{help_text(sub)}```\n")
    write("cli.md", "\n".join(parts))


# --------------------------------------------------------------------------------------------
# results (from README.md)


def readme_section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of README.md (up to the next ``## ``)."""
    m = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    if m is None:
        raise ValueError(f"README.md has no section '## {heading}' (results page)")
    return m.group(1).strip()


def results_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parts = ["# Measured results\n",
             "The numbers below are the README's own (this page is cut out of README.md when "
             "the site is built), each with the command that measured it.\n"]
    for heading in RESULTS:
        parts.append(f"## {heading}\n\n{readme_section(readme, heading)}\n")
    # "as above" in the README points at its `evaluate` example: show that command here
    command = readme_command(readme_section(readme, "The command line"), "spikeconverter evaluate")
    parts.append(f"## The command behind the ResNet-20 table\n\n```bash\n{command}\n```\n")
    write("results.md", "\n".join(parts))


def readme_command(section: str, start: str) -> str:
    """The shell command of ``section`` beginning with ``start``, with its continuation lines."""
    lines = section.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(start):
            out = [line]
            while out[-1].rstrip().endswith("\\") and i + len(out) < len(lines):
                out.append(lines[i + len(out)])
            return "\n".join(out)
    raise ValueError(f"README.md shows no command starting with {start!r}")


# --------------------------------------------------------------------------------------------
# tutorials


def source_key(script: Path) -> str:
    """Hash of the tutorial, every package source file and the interpreter version."""
    h = hashlib.sha256(sys.version.encode())
    for f in [script, *sorted(SRC.rglob("*.py"))]:
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_tutorial(script: Path) -> Path:
    """Run ``script --smoke`` once per source key; returns the folder holding ``stdout.txt``
    and the PNG files it wrote."""
    done = CACHE / f"{script.stem}-{source_key(script)}"
    if (done / "stdout.txt").exists():
        return done
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(SRC), os.environ.get("PYTHONPATH")])), "TQDM_DISABLE": "1"}
    for old in CACHE.glob(f"{script.stem}-*"):
        shutil.rmtree(old)
    stage = done.with_name(done.name + ".partial")
    stage.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        # run in an empty folder: what the tutorial writes (out/...) stays out of the repo
        res = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=900)
        if res.returncode != 0:
            raise RuntimeError(f"{script.name} --smoke failed (exit {res.returncode}):\n"
                               f"{res.stderr[-3000:]}")
        (stage / "stdout.txt").write_text(res.stdout, encoding="utf-8")
        for png in sorted(Path(tmp).rglob("*.png")):
            shutil.copy(png, stage / png.name)
    stage.replace(done)
    return done


def split_docstring(source: str) -> tuple[str, str]:
    """(module docstring as Python reads it, the code after it)."""
    tree = ast.parse(source)
    doc = ast.get_docstring(tree, clean=True)
    if doc is None:
        raise ValueError("a tutorial must start with a docstring (its page's text)")
    code = source.splitlines(keepends=True)[tree.body[0].end_lineno:]
    return doc, "".join(code).lstrip("\n")


def prose(doc: str) -> tuple[str, str]:
    """(title, Markdown body) of a tutorial docstring: first line the title, RST ``::``
    literal blocks as Markdown code blocks."""
    title, _, body = doc.strip().partition("\n")
    body = re.sub(r"::\n", ":\n", body)
    return title.strip().rstrip("."), body.strip()


def tutorial_page(script: Path) -> tuple[str, str]:
    doc, code = split_docstring(script.read_text(encoding="utf-8"))
    title, body = prose(doc)
    run = run_tutorial(script)
    slug = script.stem
    parts = [f"# {title}\n", body + "\n",
             f"Source: `tutorials/{script.name}` (below).\n",
             "## Output\n",
             f"Printed by `python tutorials/{script.name} --smoke` when this site was built:\n",
             "```text\n" + run.joinpath("stdout.txt").read_text(encoding="utf-8") + "```\n"]
    for png in sorted(run.glob("*.png")):
        with mkdocs_gen_files.open(f"tutorials/{slug}/{png.name}", "wb") as f:
            f.write(png.read_bytes())
        parts.append(f"![{png.stem}]({slug}/{png.name})\n")
    parts += ["## Source\n", "```python\n" + code + "```\n"]
    path = f"tutorials/{slug}.md"
    write(path, "\n".join(parts))
    short = title.split(":", 1)[-1].strip()
    return short[:1].upper() + short[1:], path


# --------------------------------------------------------------------------------------------
# navigation


def nav(tutorials: list[tuple[str, str]], reference: list[tuple[str, str]],
        modules: list[tuple[str, str]]) -> str:
    lines = ["* [Home](index.md)", "* [Getting started](getting-started.md)",
             "* [Concepts](concepts.md)", "* [The neuron in Norse code](norse-users.md)"]
    if tutorials:
        lines.append("* Tutorials")
        lines += [f"    * [{t}]({p})" for t, p in tutorials]
    lines += ["* [Command line](cli.md)", "* [Measured results](results.md)",
              "* [Targeting Loihi 2](loihi2.md)", "* [The batched Lava runtime](lava-batched.md)"]
    # written by benchmarks/coverage.py --docs from a sweep (issue 14)
    if (ROOT / "docs" / "coverage.md").exists():
        lines.append("* [Coverage: torchvision classifiers](coverage.md)")
    # the architecture page is written with the refactor (issue 10): listed once it exists
    if (ROOT / "docs" / "architecture.md").exists():
        lines.append("* [Architecture](architecture.md)")
    lines.append("* API reference")
    lines += [f"    * [{t}]({p})" for t, p in reference]
    lines.append("    * Modules")
    lines += [f"        * [{t}]({p})" for t, p in modules]
    return "\n".join(lines) + "\n"


def main() -> None:
    cli_page()
    results_page()
    tutorials = [tutorial_page(s) for s in TUTORIALS]
    write("SUMMARY.md", nav(tutorials, reference_pages(), module_pages()))


main()
