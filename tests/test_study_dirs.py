"""Two configs in one checkout write apart: a config's `study` names its results,
logs and benchmarks directories (issue 16, item 7). The workflow's side (every
rule's paths under the study's roots) is tests/test_workflow.py's named-study
test; here the pieces outside Snakemake: which study a command line runs, the
report's place, and targets outside the study."""

from __future__ import annotations

import os
import sys

import pytest
import yaml

from lesion.targets import problem
from lesion.tools import run

CONFIG = {"dataset": {"name": "digits"}, "models": {"mlp": {"layers": "all"}},
          "perturbations": {"gaussian": {"levels": [0.5], "draws": 1}}}


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "named.yaml").write_text(yaml.safe_dump({**CONFIG, "study": "named"}))
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump({"seed": 3}))
    return tmp_path


@pytest.mark.parametrize(("args", "name"), [
    ([], None),                                                     # the default config
    (["--configfile", "named.yaml"], "named"),
    (["--configfile=named.yaml"], "named"),
    (["--configfile", "named.yaml", "overlay.yaml", "-n"], "named"),  # an overlay without one keeps it
    (["--configfile", "config/config.yaml", "named.yaml"], "named"),  # the later file wins
    (["--configfiles", "named.yaml", "config/config.yaml"], "named"),
    (["--configfile", "named.yaml", "--config", "seed=1", "study=other"], "other"),
    (["-C", "study=other", "--cores", "2"], "other"),
])
def test_the_study_a_command_line_runs(project, args, name):
    assert run.study_name(["snakemake", *args]) == name


FAKE_SNAKEMAKE = """import sys, pathlib
args = sys.argv[1:]
if "--dry-run" in args:  # make report asks first whether the study is up to date: it is
    print("Nothing to be done (all requested files are present and up to date).")
    sys.exit(0)
target = pathlib.Path(args[args.index("--report") + 1])
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(" ".join(args))
"""


def test_the_report_goes_to_the_studys_results_and_is_rebuilt_only_when_stale(project, capsys):
    fake = project / "fake_snakemake"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_SNAKEMAKE)
    fake.chmod(0o755)
    command = [str(fake), "--configfile", "named.yaml"]
    assert run.main(["--report", *command]) == 0
    report = project / "results" / "named" / "report.html"
    assert report.read_text() == "--report results/named/report.html --configfile named.yaml"
    assert not (project / "results" / "report.html").exists()

    report.write_text("kept")
    assert run.main(["--report", *command]) == 0
    assert "Report up to date: results/named/report.html" in capsys.readouterr().out
    assert report.read_text() == "kept"

    table = project / "results" / "named" / "digits" / "mlp" / "metrics.parquet"
    table.parent.mkdir(parents=True)
    table.write_text("new")
    os.utime(table, (report.stat().st_mtime + 5,) * 2)
    assert run.main(["--report", *command]) == 0
    assert report.read_text() != "kept"

    assert run.main(["--report", str(fake)]) == 0  # the default config: today's place
    assert (project / "results" / "report.html").is_file()


def test_a_target_outside_the_studys_results_is_named_as_such():
    named = {**CONFIG, "study": "named"}
    message = problem("results/digits/mlp/metrics.parquet", named)
    assert message == ("results/digits/mlp/metrics.parquet: not a file of study 'named'; "
                       "expected a path under results/named/ (this config's `study` names its "
                       "results directory)")
    assert problem("results/named/digits/mlp/metrics.parquet", named) is None
    assert "operator 'bitflip' is not in the config" in problem(
        "results/named/digits/mlp/predictions/bitflip.parquet", named)
    assert problem("results/digits/mlp/metrics.parquet", CONFIG) is None
    assert "operator 'bitflip'" in problem("results/digits/mlp/variants/bitflip.parquet", CONFIG)
    assert problem("results/named/digits/mlp/predictions/none.parquet", named) is None
    assert "expected results/named/digits/mlp/variants/gaussian.parquet (its rows of layer " \
        "'fc1')" in problem("results/named/digits/mlp/variants/gaussian/fc1.parquet", named)
