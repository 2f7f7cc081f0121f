"""The package as pip installs it: metadata, the console script and the bundled configs."""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile

from lit_superposition.cli import bundled_configs
from tests.conftest import REPO


def test_lightning_pin_excludes_the_compromised_releases():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    requirements = setup["options"]["install_requires"]
    lightning = next(line for line in requirements.splitlines() if line.strip().startswith("pytorch-lightning"))
    assert ">=2.6.4" in lightning and "!=2.6.2" in lightning and "!=2.6.3" in lightning
    assert "lit-superposition = lit_superposition.cli:main" in setup["options.entry_points"]["console_scripts"]


def test_a_built_wheel_carries_every_bundled_config(tmp_path):
    # What `pip install .` installs: a regular (non-editable) wheel must carry the configs, so that
    # `--config NAME.yaml` resolves from site-packages too.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, timeout=300,
    )
    wheel = next(tmp_path.glob("lit_superposition-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"lit_superposition/configs/{name}" for name in bundled_configs()} <= names
    assert any(name.endswith("entry_points.txt") for name in names)
