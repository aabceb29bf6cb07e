"""``python -m metallo.cli``: the ``metallo`` command."""

from metallo.cli import main

main()
