# The command's body and --help text are tfadv/cli/export_savedmodel.py, installed as the console command
# tfadv-export; this file runs the same main() from a checkout.
from tfadv.cli.export_savedmodel import main

if __name__ == "__main__":
    main()
