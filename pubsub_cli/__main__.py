"""Entry for ``python -m pubsub_cli``: the same command line as ``pubsub``."""

from .app import main

if __name__ == "__main__":
    main()
