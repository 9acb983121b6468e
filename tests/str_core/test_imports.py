"""str_core stays a pure-PyTorch library: importing it loads no infrastructure package."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("ray", "mlflow", "fastapi", "sqlalchemy", "pydantic_settings", "workers", "service")


def test_str_core_imports_no_infrastructure() -> None:
    code = (
        "import sys\n"
        "import str_core, str_core.layers, str_core.models, str_core.data, str_core.metrics\n"
        "import str_core.train, str_core.budgets, str_core.config, str_core.pruning\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
