"""Results along one axis (training-set size, training budget), shared by the studies that vary
one: test accuracy per model at each point of the axis, the differences between models at each
point, and one plot per group (dataset) of accuracy against the axis.

A study names its conditions so that `split(condition)` gives (group, point), and adds the
column `x` (the point as a number to sort and plot by) to the frame `along` returns."""
from research.sweeps import report


def along(frame, split):
  """One row per (model, condition): mean, std, 95% half-width and n of test accuracy, with the
  condition's `group` and `point` (split(condition))."""
  agg = report.aggregate(frame, metrics=("test_accuracy",))
  parts = agg["condition"].map(split)
  agg["group"], agg["point"] = parts.str[0], parts.str[1]
  return agg


def gaps(frame, pairs, split) -> list[dict]:
  """Welch intervals of model a − model b at each condition, for the (a, b) of `pairs`: dicts
  with group, point, a, b, diff, low, high, verdict."""
  out = []
  for cond in dict.fromkeys(frame["condition"]):
    cell = frame[frame["condition"] == cond]
    for a, b in pairs:
      xa, xb = (cell[cell["model"] == m]["test_accuracy"] for m in (a, b))
      if len(xa) and len(xb):
        d, low, high = report.diff_interval(xa, xb)
        group, point = split(cond)
        out.append({"group": group, "point": point, "a": a, "b": b, "diff": d, "low": low,
                    "high": high, "verdict": report.verdict(low, high)})
  return out


def table(agg, budgets: dict, head) -> list[str]:
  """Markdown: per group, one row per model, one column per point in the order of `x`, headed
  head(rows of that point); † marks a cell still rising at the end of its training
  (studies.cell_budgets)."""
  lines = []
  for group, mine in agg.groupby("group", sort=False):
    xs = sorted(set(mine["x"]))
    lines += [f"{group}:", "", "| model | " + " | ".join(head(mine[mine["x"] == x])
                                                          for x in xs) + " | n |",
              "|---|" + "---|" * (len(xs) + 1)]
    for model, g in mine.groupby("model", sort=False):
      g = g.set_index("x")
      cells = []
      for x in xs:
        if x not in g.index:
          cells.append("")
          continue
        marker = (budgets.get((model, g.loc[x, "condition"])) or {}).get("marker")
        cells.append(report.fmt_interval(g.loc[x, "test_accuracy_mean"],
                                         g.loc[x, "test_accuracy_ci95"])
                     + (" †" if marker and marker.get("under_trained") else ""))
      lines.append(f"| {model} | " + " | ".join(cells) + f" | {int(g['n'].max())} |")
    lines.append("")
  return lines


def gap_lines(found: list[dict], heads: tuple[str, str], point) -> list[str]:
  """Markdown table of `gaps`' rows under the heads (group, point); point(value) writes a
  point."""
  lines = [f"| {heads[0]} | {heads[1]} | a − b | difference (pp, Welch 95%) | |",
           "|---|---|---|---|---|"]
  return lines + [f"| {g['group']} | {point(g['point'])} | {g['a']} − {g['b']} | "
                  f"{report.fmt_diff(g['diff'], g['low'], g['high'])} | {g['verdict']} |"
                  for g in found]


def plot(agg, path, xlabel: str, log: bool = True) -> None:
  """One panel per group: test accuracy (mean, 95% CI) against `x`, one line per model."""
  plt = report.setup_matplotlib()
  groups = list(dict.fromkeys(agg["group"]))
  fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
  for ax, group in zip(axes[0], groups):
    for model, g in agg[agg["group"] == group].sort_values("x").groupby("model", sort=False):
      ax.errorbar(g["x"], 100 * g["test_accuracy_mean"],
                  yerr=100 * g["test_accuracy_ci95"].fillna(0), marker="o", ms=3, capsize=2,
                  label=model)
    if log:
      ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(group)
    ax.legend(fontsize=8)
  report.save_figure(fig, path)
