"""Generated deployment files are current: the committed compose Prometheus
config, Kubernetes base and canary components equal what deploy/generate.py
makes from common/components.py and observability's rules today, and
docs/configuration.md equals what the settings dataclasses say. A change to a
port, a component, a rule or a setting without regenerating fails here."""
from __future__ import annotations

import subprocess
import sys

from deploy import generate
from deploy.configdoc import render
from tests.deploy.deploy_helpers import ROOT


def test_generated_deploy_files_are_current():
    stale = [str(rel) for rel, text in generate.files().items()
             if not (ROOT / "deploy" / rel).exists() or (ROOT / "deploy" / rel).read_text() != text]
    assert not stale, f"stale: {stale}; run `python -m deploy.generate`"


def test_no_orphaned_generated_files():
    """A component removed from common/components.py must not leave its manifests behind."""
    made = {ROOT / "deploy" / rel for rel in generate.files()}
    on_disk = {p for p in (ROOT / "deploy").rglob("*.y*ml")
               if p.read_text().startswith(generate.HEADER)}
    assert on_disk == made


def test_configuration_doc_is_current():
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), \
        "run `python scripts/gen_config_doc.py`"


def test_config_doc_lists_every_setting_of_every_written_service():
    from deploy.configdoc import env_names
    from common.components import COMPONENTS

    doc = (ROOT / "docs" / "configuration.md").read_text()
    listed = 0
    for c in COMPONENTS:
        names = env_names(c)
        for name in names or ():
            # Common ones appear once as <PREFIX>NAME unless the service changes the default.
            assert f"`{name}`" in doc or f"`<PREFIX>{name.removeprefix(c.env_prefix)}`" in doc, name
            listed += 1
    assert listed


def test_check_mode_of_the_script_agrees():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_config_doc.py"), "--check"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
