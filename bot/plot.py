"""Drawing the charts of bot/charts.py as PNG with matplotlib's Agg backend: 800x400 pixels, large
fonts, the health levels' colours (bot/palette.py). Deterministic: one bundled font, no timestamp or
software tag in the file, so the same numbers give the same bytes. matplotlib is imported on the first
chart only, so importing the bot stays fast."""

from __future__ import annotations

import io
import threading
from typing import Any

from bot.charts import HEIGHT, WIDTH, Bars, Burn, Figure
from bot.palette import IDEAL, INK, LEVEL_COLOUR

DPI = 100
_lock = threading.Lock()  # pyplot's state is global; the Figure API below is not, but font setup is


def _matplotlib() -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update(
        {
            "font.family": "DejaVu Sans",  # bundled with matplotlib: the same glyphs everywhere
            "font.size": 15,
            "axes.titlesize": 17,
            "axes.edgecolor": INK,
            "axes.labelcolor": INK,
            "text.color": INK,
            "xtick.color": INK,
            "ytick.color": INK,
            "svg.hashsalt": "retainer",
            "path.simplify": True,
        }
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    return MplFigure, FigureCanvasAgg


def _hours(minutes: int) -> float:
    return minutes / 60


def render_png(figure: Figure) -> bytes:
    """The chart as PNG bytes, WIDTH x HEIGHT pixels."""
    with _lock:
        mpl_figure, canvas_of = _matplotlib()
        fig = mpl_figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI)
        ax = fig.add_subplot()
        match figure:
            case Burn():
                _burn(ax, figure)
            case Bars():
                _bars(ax, figure)
        ax.set_title(figure.title[:70], loc="left")
        ax.spines[["top", "right"]].set_visible(False)
        fig.tight_layout()
        canvas = canvas_of(fig)
        canvas.draw()
        # The drawn pixels themselves: a PNG written by savefig only to be read back cost a quarter of
        # each chart (95 -> 71 ms), for the same bytes in the end.
        from PIL import Image  # comes with matplotlib

        drawn = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        pixels = drawn.convert("RGB")
    # A few flat colours need no 24-bit pixels: a 32-colour palette makes the file a quarter of the
    # size (Teams inlines it in a card of at most ~28 KB).
    out = io.BytesIO()
    pixels.quantize(colors=32).save(out, format="PNG", optimize=True)
    return out.getvalue()


def _burn(ax: Any, b: Burn) -> None:
    days = max(b.days, 1)
    allocated = _hours(b.allocated)
    ax.plot([0, days], [0, allocated], color=IDEAL, linestyle="--", linewidth=2, label="even burn")
    ax.axhline(allocated, color=INK, linewidth=2, label=f"allocated {allocated:g} h")
    ax.plot(
        [0, b.day], [0, _hours(b.used)], color=LEVEL_COLOUR[b.level], linewidth=4, marker="o", label="used"
    )
    ax.set_xlim(0, days)
    ax.set_ylim(0, max(allocated, _hours(b.used)) * 1.15 or 1)
    ax.set_xlabel("day of the month")
    ax.set_ylabel("hours")
    ax.legend(loc="upper left", frameon=False, fontsize=13)


def _bars(ax: Any, b: Bars) -> None:
    scale = _hours if b.unit == "h" else float
    xs = list(range(len(b.labels)))
    values = [scale(v) for v in b.values]
    targets = [scale(t) for t in b.targets]
    colours = [LEVEL_COLOUR[b.level(i)] for i in xs]
    ax.bar(xs, values, color=colours, width=0.6, label="hours used" if b.unit == "h" else "asked for")
    target_label = "allocated" if b.unit == "h" else "baseline"
    for i, target in enumerate(targets):
        ax.hlines(target, i - 0.4, i + 0.4, color=INK, linewidth=3, label=target_label if i == 0 else None)
    for i, value in enumerate(values):
        ax.annotate(f"{value:g}", (i, value), ha="center", va="bottom", fontsize=13)
    ax.set_xticks(xs, [label[:14] for label in b.labels])
    ax.set_ylim(0, max([*values, *targets, 1]) * 1.2)
    ax.set_ylabel("hours" if b.unit == "h" else "deliverables")
    if xs:
        ax.legend(loc="upper left", frameon=False, fontsize=13)
