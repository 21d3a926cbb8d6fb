"""The dashboard's Streamlit settings as Streamlit itself reads them from the repository: XSRF protection on,
and the same upload limit as serving's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from serving._settings import ServingArgs

ROOT = Path(__file__).resolve().parents[2]


def _streamlit_option(name: str) -> str:
    shown = subprocess.run(
        [str(Path(sys.executable).with_name("streamlit")), "config", "show"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    match = re.search(rf"^{name} = (.+)$", shown, flags=re.MULTILINE)
    assert match, f"streamlit config show has no {name}"
    return match[1].strip()


def test_upload_limit_equals_servings() -> None:
    config = yaml.safe_load((ROOT / "ray_config.yaml").read_text())
    serving_mb = ServingArgs.model_validate(config["applications"][0]["args"]).max_upload_mb
    assert float(_streamlit_option("maxUploadSize")) == serving_mb


def test_xsrf_protection_is_on() -> None:
    assert _streamlit_option("enableXsrfProtection") == "true"


def test_readers_get_no_developer_menu_or_deploy_button() -> None:
    assert _streamlit_option("toolbarMode") == '"viewer"'
