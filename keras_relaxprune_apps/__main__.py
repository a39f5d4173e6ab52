"""`python -m keras_relaxprune_apps`: the `relaxprune` command (`cli.main`)."""

from keras_relaxprune_apps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
