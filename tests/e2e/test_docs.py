"""The documentation site builds with --strict, documents every module, and its examples run as written."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_superposition import LitToyModel, SparseFeatureDataModule
from lit_superposition.cli import build_cli
from tests.conftest import REPO

DOCS = REPO / "docs"
SITE_TOOLS = ("mkdocs", "material", "mkdocstrings_handlers.python")
missing_tools = [name for name in SITE_TOOLS if importlib.util.find_spec(name.split(".")[0]) is None
                 or importlib.util.find_spec(name) is None]
needs_mkdocs = pytest.mark.skipif(bool(missing_tools), reason=f"the docs extra is not installed (no {', '.join(missing_tools)}):"
                                  ' pip install -e ".[docs]"')


def code_blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner about MkDocs 2, not about this site
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return out, result


@needs_mkdocs
def test_the_site_builds_with_strict(site):
    """A broken link, a missing anchor, a page left out of the nav or an unresolved reference fails it."""
    _, result = site
    warnings = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "\n".join(warnings) or result.stderr[-3000:]


@needs_mkdocs
def test_every_module_of_the_package_is_in_the_api_reference(site):
    out, result = site
    assert result.returncode == 0
    rendered = "\n".join(page.read_text() for page in (out / "reference").rglob("index.html"))
    package = REPO / "lit_superposition"
    modules = [".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
               for path in package.rglob("*.py") if "__pycache__" not in path.parts]
    missing = sorted(m for m in modules if f'id="{m}"' not in rendered)
    assert not missing, f"not in the API reference (docs/reference/*.md): {missing}"


def test_the_guides_use_this_release_s_command_forms():
    """--optimizer became --model.optimizer; experiment callbacks live under experiment:, not trainer.callbacks."""
    experiment_tools = ("WeightPatching", "TemplateStart", "CrossoverReport", "PhaseDiagram")
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for block in code_blocks(page, "bash"):
            assert not re.search(r"\s--(optimizer|lr_scheduler)\b", block), f"{page.name}: the 0.2 form in {block}"
        for block in code_blocks(page, "yaml"):
            callbacks = block.split("trainer:", 1)[-1].split("\nexperiment:", 1)[0] if "trainer:" in block else ""
            assert not any(tool in callbacks for tool in experiment_tools), f"{page.name}: an experiment tool under trainer: {block}"


def test_the_own_variant_example_runs_as_written(in_tmp, monkeypatch):
    page = DOCS / "variants.md"
    (code,) = code_blocks(page, "python")
    (in_tmp / "my_models.py").write_text(code)
    args = code_blocks(page, "bash")[-1].split()
    assert args[:3] == ["PYTHONPATH=.", "lit-superposition", "fit"]
    monkeypatch.syspath_prepend(str(in_tmp))
    sys.modules.pop("my_models", None)
    build_cli([*args[2:], "--trainer.max_steps=20", "--trainer.enable_progress_bar=false", "--report_page=false"])
    report = json.loads((in_tmp / "runs" / "pentagon" / "version_0" / "report.json").read_text())
    assert report["variant"] == "TanhOutput" and report["step"] == 20


def test_the_callback_guide_examples_run_and_log_what_they_say(tmp_path):
    namespace: dict = {}
    for block in code_blocks(DOCS / "callbacks.md", "python"):
        exec(compile(block, "docs/callbacks.md", "exec"), namespace)  # noqa: S102 - the guide's own examples
    plain, measured = namespace["BiasMonitor"](every_n_steps=40), namespace["BiasCurves"](every_n_steps=40, instances=[0, 2])
    trainer = pl.Trainer(max_steps=80, callbacks=[plain, measured], logger=TensorBoardLogger(tmp_path, name="guide"),
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)
    module = LitToyModel(n_instances=3, n_features=4)
    trainer.fit(module, SparseFeatureDataModule(n_instances=3, n_features=4, batch_size=64))
    events = EventAccumulator(trainer.log_dir)
    events.Reload()
    assert [e.step for e in events.Scalars("bias_mean/instance_002")] == [40, 80]
    curve = events.Scalars("bias/instance_002/feature_03")
    assert [e.step for e in curve] == [40, 80]
    assert curve[-1].value == pytest.approx(float(module.model.b.detach()[2, 3]))  # the instance and feature the tag names
    assert "bias/instance_001/feature_00" not in events.Tags()["scalars"]  # only the chosen instances
