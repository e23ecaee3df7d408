"""The report's notes that say what to run for a section whose input is missing, worded by the
options the run was made with (the manifest's ``options``: --no-stress, --no-monthly,
--no-scenarios, --columns, --no-analyze) and by its study (a stress: section or not)."""

from __future__ import annotations

from mcrisk.report import markup as mu


def options(run: dict) -> dict:
    """The options the run recorded (manifest ``options``); {} for a run that recorded none."""
    opts = run["manifest"].get("options")
    return opts if isinstance(opts, dict) else {}


def rerun_for_rows(run: dict, need: set[str]) -> str:
    """What to run so that the scenario rows hold the columns `need`, given the run's options."""
    opts = options(run)
    if run["scenarios"] is None and opts.get("write_scenarios") is False:
        return "this run was made with --no-scenarios: run it again without --no-scenarios"
    if run["scenarios"] is None:
        return "this run kept no scenario rows: run it again"
    missing = sorted(need - set(run["scenarios"].columns))
    if opts.get("columns"):
        return f"this run kept only --columns {','.join(opts['columns'])}: run it again with {', '.join(missing)} among them"
    return f"this run's scenario rows have no {', '.join(missing)}: run it again with this version of mcrisk run"


def missing_analysis(run: dict, what: str) -> str:
    """The note of a run without sensitivity.csv and comparison.csv: what to run to see `what`."""
    if run["scenarios"] is None:
        return mu.note(
            f"No sensitivity.csv or comparison.csv: {rerun_for_rows(run, set())}, then mcrisk analyze, to see {what}."
        )
    skipped = " (it was made with --no-analyze)" if options(run).get("analyze") is False else ""
    return mu.note(f"This run has not been analyzed{skipped}: run  mcrisk analyze {run['folder']}  to see {what}.")


def no_stress(run: dict) -> str:
    """What to run to get stress.csv, given the study and the options this run was made with."""
    m, st = run["manifest"], run["study"]
    names = list(st["stress"]) if isinstance(st.get("stress"), dict) else []
    if not names:
        return mu.note(
            "This run has no stress.csv: its study has no stress: section. Add one (named overrides, "
            "docs/study.md) to see the base case and each stress side by side on the same draws."
        )
    which = f"the study's {len(names)} stress{'es' if len(names) != 1 else ''} ({', '.join(map(str, names))})"
    if options(run).get("stress") is False:
        why = "it was made with --no-stress: run it again without --no-stress"
    elif m.get("merged_from") or isinstance(m.get("shard"), dict):
        why = "it was run in shards (--shard), which skip the stresses: run the study in one job"
    else:
        why = "run it again with this version of mcrisk run"
    return mu.note(f"This run has no stress.csv: {why} to see {which} beside the base case on the same draws.")
