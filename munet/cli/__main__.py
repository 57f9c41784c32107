"""``python -m munet.cli`` is the ``munet`` command (for an environment without the console script)."""

from munet.cli import main

main()
