"""The documentation site builds with ``mkdocs build --strict``: a broken cross-reference, a
missing page or figure, a tutorial that fails or a docstring mkdocstrings cannot parse fails."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is missing: install the docs extra (pip install -e '.[docs]'; "
                    "`make test` does)")
    site = tmp_path / "site"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DISABLE_MKDOCS_2_WARNING": "true",
           "NO_MKDOCS_2_WARNING": "true"}  # the theme's and a plugin's banners
    res = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                          str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-6000:]
    page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    for command in ("convert", "evaluate", "run-lava", "demo", "finetune"):
        assert f"spikeconverter {command} --help" in page
    assert "--baseline-steps" in page  # argparse's own text, not a copy
    for name in ("code", "neuron", "schedule", "pipeline", "exactness", "conversion_error"):
        assert (site / "concepts" / f"{name}.png").stat().st_size > 10_000
    tutorial = (site / "tutorials" / "02_ilif_in_norse_training" / "index.html").read_text(
        encoding="utf-8")
    assert "equals the quantised ANN: True" in tutorial  # its output, run for this build
    api = (site / "reference" / "coding" / "index.html").read_text(encoding="utf-8")
    assert 'id="spikeconverter.coding.encode"' in api
    assert "91.64 %" in (site / "results" / "index.html").read_text(encoding="utf-8")
