# The command's body and --help text are tfadv/cli/train_natural.py, installed as the console command
# tfadv-train-natural; this file runs the same main() from a checkout.
from tfadv.cli.train_natural import main

if __name__ == "__main__":
    main()
