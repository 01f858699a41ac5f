"""Subject means, group summaries and between-group tests of the study report.

- subjects: per participant × session × trial_type × channel × chromophore, the mean of
  each measure over the included repetitions (NaN-skipping) and ``n_epochs``.
- groups: per group × session × trial_type × chromophore on the ``all`` channel's subject
  means of ``mean_change``: ``n_subjects``, ``mean``, ``sd`` (n − 1), ``sem`` (sd/√n), the
  group mean's change from the first session (``change_from_first``) and, over the
  subjects with both sessions, the mean and sd of their own change (``paired_change``,
  ``paired_sd``, ``n_paired``).
- tests, on the same subject means: Welch's t (scipy.stats.ttest_ind, equal_var=False)
  for two groups; one-way ANOVA (scipy.stats.f_oneway) plus pairwise Welch t with Holm's
  adjustment for three or more; with two or more sessions a linear mixed model
  (statsmodels MixedLM, REML: mean_change ~ C(group) * C(session), a random intercept per
  participant), one row per group × session interaction term.
"""

from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .report_measures import MEASURES

if TYPE_CHECKING:  # statsmodels (the optional report extra) is imported where it is used
    from statsmodels.regression.mixed_linear_model import MixedLMResults

KEYS = ["participant_id", "session", "group", "trial_type", "channel", "chromophore"]
TEST_COLUMNS = [
    "session",
    "trial_type",
    "chromophore",
    "method",
    "comparison",
    "n_subjects",
    "estimate",
    "statistic",
    "df",
    "df_denom",
    "p",
    "p_holm",
    "note",
]


def subjects_table(epochs: pd.DataFrame) -> pd.DataFrame:
    """Mean of every measure over each subject's included epochs, and their count."""
    used = epochs[epochs["excluded"] == "no"]
    grouped = used.groupby(KEYS, sort=True)
    out = grouped[list(MEASURES)].mean()
    out["n_epochs"] = grouped.size()
    return out.reset_index()


def _all_channel(subjects: pd.DataFrame) -> pd.DataFrame:
    sub = subjects[subjects["channel"] == "all"]
    return sub[sub["mean_change"].notna()]


def groups_table(subjects: pd.DataFrame) -> pd.DataFrame:
    """Group summaries of the subjects' ``all``-channel mean_change (see the module doc)."""
    sub = _all_channel(subjects)
    keys = ["group", "session", "trial_type", "chromophore"]
    g = sub.groupby(keys, sort=True)["mean_change"]
    out = pd.DataFrame({"n_subjects": g.size(), "mean": g.mean(), "sd": g.std(ddof=1)})
    out["sem"] = out["sd"] / np.sqrt(out["n_subjects"])
    out = out.reset_index()
    out.insert(4, "channel", "all")
    out.insert(5, "measure", "mean_change")
    first = sorted(sub["session"].unique())[0] if len(sub) else None
    change, paired, paired_sd, n_paired = [], [], [], []
    for row in out.itertuples():
        at = (sub["group"] == row.group) & (sub["trial_type"] == row.trial_type)
        at &= sub["chromophore"] == row.chromophore
        cell = sub[at].set_index("participant_id")
        base = cell[cell["session"] == first]["mean_change"]
        here = cell[cell["session"] == row.session]["mean_change"]
        diff = (here - base).dropna()
        change.append(here.mean() - base.mean() if len(base) else np.nan)
        paired.append(diff.mean() if len(diff) else np.nan)
        paired_sd.append(diff.std(ddof=1) if len(diff) > 1 else np.nan)
        n_paired.append(len(diff))
    out["first_session"] = first
    out["change_from_first"] = change
    out["paired_change"] = paired
    out["paired_sd"] = paired_sd
    out["n_paired"] = n_paired
    return out


def _holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order."""
    order = np.argsort(p)
    m, running, adj = len(p), 0.0, np.empty(len(p))
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def _between(values: dict[str, np.ndarray], where: dict[str, str]) -> list[dict]:
    from scipy import stats

    groups = sorted(g for g, v in values.items() if len(v) >= 2)
    n = int(sum(len(values[g]) for g in groups))
    rows: list[dict] = []
    if len(groups) >= 3:
        res = stats.f_oneway(*(values[g] for g in groups))
        rows.append(
            where
            | {"method": "one-way ANOVA (scipy.stats.f_oneway)", "comparison": " vs ".join(groups)}
            | {"n_subjects": n, "estimate": np.nan, "statistic": float(res.statistic)}
            | {"df": len(groups) - 1, "df_denom": n - len(groups)}
            | {"p": float(res.pvalue), "p_holm": np.nan, "note": ""}
        )
    pairs = list(itertools.combinations(groups, 2))
    welch = []
    for a, b in pairs:
        res = stats.ttest_ind(values[a], values[b], equal_var=False)
        welch.append((a, b, res))
    adjusted = _holm([float(r.pvalue) for _, _, r in welch]) if len(welch) > 1 else [np.nan]
    for (a, b, res), p_holm in zip(welch, adjusted):
        rows.append(
            where
            | {"method": "Welch's t (scipy.stats.ttest_ind, equal_var=False)"}
            | {"comparison": f"{a} − {b}", "n_subjects": len(values[a]) + len(values[b])}
            | {"estimate": float(np.mean(values[a]) - np.mean(values[b]))}
            | {"statistic": float(res.statistic), "df": float(res.df), "df_denom": np.nan}
            | {"p": float(res.pvalue)}
            | {"p_holm": p_holm, "note": ""}
        )
    return rows


def mixed_model(cell: pd.DataFrame) -> tuple[MixedLMResults | None, str]:
    """statsmodels MixedLM fit of mean_change ~ C(group) * C(session) | participant."""
    import statsmodels.formula.api as smf

    data = cell[["participant_id", "group", "session", "mean_change"]].copy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = smf.mixedlm(
                "mean_change ~ C(group) * C(session)", data, groups=data["participant_id"]
            )
            fit = model.fit(reml=True)
        except (ValueError, np.linalg.LinAlgError) as err:
            return None, f"not fitted: {err}"
    notes = sorted({type(w.message).__name__ for w in caught})
    return fit, ("warnings: " + ", ".join(notes)) if notes else ""


def _mixed_rows(cell: pd.DataFrame, where: dict[str, str]) -> list[dict]:
    fit, note = mixed_model(cell)
    method = (
        "linear mixed model (statsmodels MixedLM, REML; mean_change ~ C(group) * C(session), "
        "random intercept per participant; statistic z)"
    )
    if fit is None:
        return [where | {"method": method, "comparison": "group × session", "note": note}]
    rows = []
    for term in fit.params.index:
        if ":" not in term:
            continue  # the interaction answers "did the groups change differently"
        rows.append(
            where
            | {"method": method, "comparison": term, "n_subjects": cell["participant_id"].nunique()}
            | {"estimate": float(fit.params[term]), "statistic": float(fit.tvalues[term])}
            | {"df": np.nan, "df_denom": np.nan, "p": float(fit.pvalues[term])}
            | {"p_holm": np.nan, "note": note}
        )
    return rows


def tests_table(subjects: pd.DataFrame) -> pd.DataFrame:
    """Between-group tests per session × trial_type × chromophore, and the mixed model
    (participants without a group, ``n/a``, are left out of them)."""
    sub = _all_channel(subjects)
    sub = sub[sub["group"] != "n/a"]
    rows: list[dict] = []
    for (session, tt, chrom), cell in sub.groupby(["session", "trial_type", "chromophore"]):
        values = {g: c["mean_change"].to_numpy() for g, c in cell.groupby("group")}
        where = {"session": session, "trial_type": tt, "chromophore": chrom}
        rows += _between(values, where)
    if sub["session"].nunique() >= 2 and sub["group"].nunique() >= 2:
        for (tt, chrom), cell in sub.groupby(["trial_type", "chromophore"]):
            rows += _mixed_rows(cell, {"session": "all", "trial_type": tt, "chromophore": chrom})
    return pd.DataFrame(rows, columns=TEST_COLUMNS)
