"""``python -m tripod_pl`` is ``tripod-train`` (its top-level help answers without importing Lightning)."""

from tripod_pl.cli.entry import main

if __name__ == "__main__":
    main()
