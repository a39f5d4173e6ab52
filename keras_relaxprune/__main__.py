"""`python -m keras_relaxprune`: the `relaxprune` command (`cli.main`)."""

from keras_relaxprune.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
