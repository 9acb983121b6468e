"""The service never imports torch, Ray, MLflow, str_core or workers (DESIGN.md §2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service.live_api import REPO_ROOT

FORBIDDEN = ("torch", "ray", "mlflow", "str_core", "workers")

PROBE = """
import json, sys
import service.app, service.__main__
from service.app import create_app
from service.settings import Settings
create_app(Settings(database_url=sys.argv[1]))
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps(heavy))
"""


def test_the_app_imports_none_of_the_heavy_packages(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.db'}"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, url, json.dumps(FORBIDDEN)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
