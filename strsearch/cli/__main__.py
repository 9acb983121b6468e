"""``python -m strsearch.cli``: the ``strsearch`` command without its console script (used by
``strsearch serve`` to start the agent with the same interpreter)."""

from strsearch.cli.app import main

main()
