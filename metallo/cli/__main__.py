"""``python -m metallo.cli``: the ``metallo`` command."""

from metallo.cli import main

if __name__ == "__main__":
    main()
