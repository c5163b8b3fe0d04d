"""Plain matplotlib figures for the analysis tools: every figure gets a CSV of its numbers beside it.

`line_plot("x/probe.png", ...)` writes `x/probe.png` and `x/probe.csv`; the figure's format comes
from its extension (`FORMATS`: .png, .pdf, .svg), so `x/probe.pdf` is a PDF. Figures are drawn on the
Agg canvas directly (no pyplot, no global backend state), so they work headless and inside tests.

Sizes fit a paper: a line plot is one column of a two-column page wide (`COLUMN_WIDTH` inches)
with 8-point text, so it goes into a paper at 100 % without rescaling its fonts; a bar chart of
many groups widens up to a full text width (`TEXT_WIDTH`). `dpi` only matters for PNG (PDF and
SVG are vector); `DPI` is print resolution.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 300
FORMATS = ("png", "pdf", "svg")
COLUMN_WIDTH = 3.4   # inches: one column of a two-column paper
TEXT_WIDTH = 7.0     # inches: the text width of a two-column paper
FONT_SIZE = 8        # points
LEGEND_INSIDE_MAX = 4  # a line plot with more series puts its legend below the axes
LEGEND_ROW = 0.13    # inches per legend entry below the axes



@dataclasses.dataclass
class Series:
  """One line: `label` in the legend, y over x; optional per-point text labels of x (CSV only)
  and a ± error bar per point (`y_std`, e.g. the std over seeds)."""
  label: str
  x: Sequence[float]
  y: Sequence[float]
  x_names: Sequence[str] | None = None
  y_std: Sequence[float] | None = None


def csv_path(png_path: str) -> str:
  return os.path.splitext(png_path)[0] + ".csv"


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> str:
  """Writes rows under a header; floats with 8 significant digits."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows([[f"{v:.8g}" if isinstance(v, float) else v for v in row] for row in rows])
  return path


def _figure(size=(COLUMN_WIDTH, 0.7 * COLUMN_WIDTH), layout=None):
  fig = Figure(figsize=size, dpi=DPI, layout=layout)
  FigureCanvasAgg(fig)
  return fig


def _style(ax) -> None:
  """8-point text on every label of `ax`."""
  ax.tick_params(labelsize=FONT_SIZE - 1)
  ax.xaxis.label.set_size(FONT_SIZE)
  ax.yaxis.label.set_size(FONT_SIZE)
  ax.title.set_size(FONT_SIZE)


def figure_format(path: str) -> str:
  """"png", "pdf" or "svg" from the extension of `path`; ValueError for any other."""
  ext = os.path.splitext(path)[1].lower().lstrip(".")
  if ext not in FORMATS:
    raise ValueError(f"figure path {path!r}: the format comes from the extension, one of "
                     f"{', '.join('.' + f for f in FORMATS)}")
  return ext


def _save(fig, path: str, dpi: int) -> None:
  fmt = figure_format(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if fig.get_layout_engine() is None:
    fig.tight_layout(pad=0.3)
  fig.savefig(path, format=fmt, dpi=dpi)


def line_plot(png_path: str, series: Sequence[Series], xlabel: str, ylabel: str, title: str,
              xticks: tuple[Sequence[float], Sequence[str]] | None = None,
              ylim: tuple[float, float] | None = None,
              integer_x: bool = False, dpi: int = DPI) -> tuple[str, str]:
  """Lines with markers, one per series, legend (below the axes for more than
  `LEGEND_INSIDE_MAX` series), grid, one paper column wide; returns (figure, csv) paths.

  The CSV has one row per point: series, x, x_name (if given), y, and y_std when a series has
  error bars.
  """
  legend_below = len(series) > LEGEND_INSIDE_MAX
  fig = _figure((COLUMN_WIDTH, 0.7 * COLUMN_WIDTH + LEGEND_ROW * len(series) * legend_below),
                "constrained" if legend_below else None)
  ax = fig.add_subplot(1, 1, 1)
  for s in series:
    if s.y_std is not None:
      ax.errorbar(list(s.x), list(s.y), yerr=list(s.y_std), marker="o", markersize=3,
                  capsize=2, linewidth=1, label=s.label)
    else:
      ax.plot(list(s.x), list(s.y), marker="o", markersize=3, linewidth=1, label=s.label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  _style(ax)
  if xticks is not None:
    ax.set_xticks(list(xticks[0]))
    ax.set_xticklabels(list(xticks[1]), fontsize=FONT_SIZE - 1)
  if ylim is not None:
    ax.set_ylim(*ylim)
  if integer_x:
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.grid(True, alpha=0.3)
  if legend_below:
    fig.legend(fontsize=FONT_SIZE - 1, loc="outside lower center")
  elif series:
    ax.legend(fontsize=FONT_SIZE - 1)
  _save(fig, png_path, dpi)
  rows = []
  with_std = any(s.y_std is not None for s in series)
  for s in series:
    names = s.x_names if s.x_names is not None else [""] * len(s.x)
    stds = s.y_std if s.y_std is not None else [""] * len(s.x)
    rows += [[s.label, x, n, y] + ([d] if with_std else [])
             for x, n, y, d in zip(s.x, names, s.y, stds)]
  header = ["series", xlabel, "x_name", ylabel] + ([f"{ylabel} std"] if with_std else [])
  path = write_csv(csv_path(png_path), header, rows)
  return png_path, path


def grouped_bar_chart(png_path: str, groups: Sequence[str], bars: Sequence[str],
                      values: Mapping[tuple[str, str], float], xlabel: str, ylabel: str,
                      title: str, annotate: bool = True, dpi: int = DPI) -> tuple[str, str]:
  """One cluster of bars per group (e.g. a config), one bar per name in `bars` (e.g. bp, fused);
  missing or NaN values are left out; one column wide, widening with the bars up to the text
  width. The CSV has one row per group, one column per bar."""
  width = 0.8 / max(len(bars), 1)
  wide = min(TEXT_WIDTH, max(COLUMN_WIDTH, 0.25 * len(groups) * max(len(bars), 1) + 1.0))
  fig = _figure((wide, 0.7 * COLUMN_WIDTH))
  ax = fig.add_subplot(1, 1, 1)
  for j, bar in enumerate(bars):
    xs, ys = [], []
    for i, g in enumerate(groups):
      v = values.get((g, bar))
      if v is not None and not math.isnan(v):
        xs.append(i + (j - (len(bars) - 1) / 2) * width)
        ys.append(v)
    rects = ax.bar(xs, ys, width=width, label=bar)
    if annotate:
      ax.bar_label(rects, fmt="%.0f", fontsize=FONT_SIZE - 2)
  ax.set_xticks(list(range(len(groups))))
  ax.set_xticklabels(list(groups), rotation=20 if len(groups) > 3 else 0,
                     ha="right" if len(groups) > 3 else "center")
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  _style(ax)
  ax.grid(True, axis="y", alpha=0.3)
  ax.legend(fontsize=FONT_SIZE - 1)
  _save(fig, png_path, dpi)
  rows = [[g, *[values.get((g, b), "") for b in bars]] for g in groups]
  path = write_csv(csv_path(png_path), ["group", *bars], rows)
  return png_path, path


def memory_chart(png_path: str, table: Mapping[str, Mapping[str, float]], title: str,
                 variants: Sequence[str] = ("bp", "bp_remat", "fused", "sequential",
                                            "pipelined"),
                 dpi: int = DPI) -> tuple[str, str]:
  """Grouped bars of the memory report (`jax_local.memory`): one cluster per config (e.g. a
  method), one bar per variant, in MiB. `table[config][variant]` is in bytes; the CSV holds MiB."""
  mib = 2.0 ** 20
  groups = list(table)
  present = [v for v in variants if any(v in table[g] for g in groups)]
  present += sorted({v for g in groups for v in table[g]} - set(present))
  values = {(g, v): table[g][v] / mib for g in groups for v in table[g]}
  return grouped_bar_chart(png_path, groups, present, values, "config (method)",
                           "compile-time memory per training step (MiB)", title, dpi=dpi)
