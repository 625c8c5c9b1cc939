# The command's body and --help text are tfadv/cli/eval_robustness.py, installed as the console command
# tfadv-eval; this file runs the same main() from a checkout.
from tfadv.cli.eval_robustness import main

if __name__ == "__main__":
    main()
