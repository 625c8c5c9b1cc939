"""tfadv.cli: the console commands of pyproject.toml are the programs the scripts/ files run."""

import ast
import os

import pytest

from tests import testing

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = testing.REPO_ROOT


def _commands():
    """command -> "module:function" of pyproject.toml's [project.scripts]."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_every_training_script_evaluation_and_export_has_a_command():
    commands = _commands()
    defenses = ["bat", "curriculum", "dynamic", "fast", "free", "l2lda", "madry", "mart",
                "natural", "trades"]
    assert sorted(commands) == sorted([f"tfadv-train-{d}" for d in defenses]
                                      + ["tfadv-eval", "tfadv-export", "tfadv-import-torch"])
    trains = sorted(n for n in os.listdir(os.path.join(ROOT, "scripts")) if n.startswith("train_"))
    assert trains == [f"train_{d}.py" for d in defenses]


@pytest.mark.parametrize("command", sorted(_commands()))
def test_a_command_is_the_main_of_its_cli_module_and_its_script_runs_the_same(command):
    target = _commands()[command]
    module, function = target.split(":")
    assert function == "main" and module.startswith("tfadv.cli."), target
    name = module.rpartition(".")[2]
    with open(os.path.join(ROOT, "tfadv", "cli", f"{name}.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    assert len(mains) == 1 and not mains[0].args.args, f"{module} needs a main() of no argument"
    assert ast.get_docstring(tree), f"{module} has no docstring: --help would have no text"
    with open(os.path.join(ROOT, "scripts", f"{name}.py"), encoding="utf-8") as f:
        script = ast.parse(f.read())
    imported = {(n.module, a.name) for n in ast.walk(script) if isinstance(n, ast.ImportFrom)
                for a in n.names}
    assert (module, "main") in imported, f"scripts/{name}.py does not run {module}.main"


def test_a_script_and_its_command_print_the_same_help():
    """The thin scripts/ file and the console command show the command's docstring and its own
    flags (defined in tfadv.cli.train_bat) as the main program's, as the script did when it held
    them."""
    script = testing.run_script("train_bat.py", "--help", check=False)
    command = testing.run_python(
        code="import sys; sys.argv = ['tfadv-train-bat', '--help']\n"
             "from tfadv.cli.train_bat import main\nmain()", check=False)
    first_line = "Bilateral Adversarial Training (BAT sec. 4-5; appendix A/B)"
    for proc, program in ((script, os.path.join(ROOT, "scripts", "train_bat.py")),
                          (command, "tfadv-train-bat")):
        assert proc.stdout.startswith(first_line), proc.stdout[:500] + proc.stderr[-2000:]
        own_flags = proc.stdout.split(f"\n{program}:\n", 1)
        assert len(own_flags) == 2, proc.stdout
        assert "--bat_model" in own_flags[1] and "--schedule" in own_flags[1], own_flags[1]
    assert script.stdout.replace(os.path.join(ROOT, "scripts", "train_bat.py"), "PROGRAM") == \
        command.stdout.replace("tfadv-train-bat", "PROGRAM")
