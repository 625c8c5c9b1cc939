# The command's body and --help text are tfadv/cli/import_torch.py, installed as the console command
# tfadv-import-torch; this file runs the same main() from a checkout.
from tfadv.cli.import_torch import main

if __name__ == "__main__":
    main()
