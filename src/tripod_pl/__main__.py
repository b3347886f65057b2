"""``python -m tripod_pl`` is ``tripod-train``."""

from tripod_pl.cli import main

if __name__ == "__main__":
    main()
