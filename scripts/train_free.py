# The command's body and --help text are tfadv/cli/train_free.py, installed as the console command
# tfadv-train-free; this file runs the same main() from a checkout. The flag definitions and
# resolve() are named here for the tests that resolve this script's flags.
from tfadv.cli.train_free import FLAGS, define_free_flags, main, resolve  # noqa: F401

if __name__ == "__main__":
    main()
