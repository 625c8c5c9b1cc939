# The command's body and --help text are tfadv/cli/train_madry.py, installed as the console command
# tfadv-train-madry; this file runs the same main() from a checkout.
from tfadv.cli.train_madry import main

if __name__ == "__main__":
    main()
