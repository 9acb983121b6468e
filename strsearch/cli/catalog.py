"""``strsearch models`` and ``strsearch datasets``: what is registered, built-in and plugins."""

from __future__ import annotations

from rich.table import Table

from strsearch.cli.render import make_console


def models() -> None:
    """List the registered models with their input shapes."""
    from str_core.models import get_model_info, list_models

    table = Table("model", "input", "classes", "description", header_style="bold")
    for name in list_models():
        info = get_model_info(name)
        shape = "×".join(str(d) for d in info.input_shape)
        table.add_row(name, shape, str(info.num_classes), info.description)
    make_console().print(table)


def datasets() -> None:
    """List the registered datasets."""
    from str_core.data import describe_datasets

    table = Table("dataset", "description", header_style="bold")
    for name, description in describe_datasets().items():
        table.add_row(name, description)
    make_console().print(table)
