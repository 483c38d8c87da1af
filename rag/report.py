"""The report of ``rag eval``: a Markdown page of every set's figures, overall and per kind,
with the gate's outcome, and a PNG chart of retrieval and answer accuracy per kind."""

from __future__ import annotations

from pathlib import Path

from .errors import RagError
from .evaluate import ROOT
from .gate import thresholds_for
from .gold import KINDS

_COLUMNS = (("hit_at_1", "hit@1"), ("hit_at_5", "hit@5"), ("mrr", "MRR"),
            ("accuracy", "accuracy"), ("f1", "F1"), ("short_em", "short EM"),
            ("short_f1", "short F1"), ("citation_precision", "cit. P"),
            ("citation_recall", "cit. R"), ("faithfulness", "faithful"),
            ("abstain_rate", "abstain (unans.)"), ("false_abstain_rate", "false abstain"),
            ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"))


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"


def _row(label: str, figures: dict, counts: str) -> str:
    cells = [label, counts] + [_cell(k, figures.get(k)) for k, _ in _COLUMNS]
    return "| " + " | ".join(cells) + " |"


def _header(first: str) -> list[str]:
    heads = [first, "items (ans./unans.)"] + [h for _, h in _COLUMNS]
    return ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]


def _shown(path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def render_report(metrics: dict, thresholds: dict | None = None,
                  thresholds_path: str | Path | None = None, misses=None) -> str:
    """The Markdown report of an evaluation (:func:`rag.evaluate.evaluate_sets`)."""
    st = metrics["settings"]
    lines = ["# Evaluation report", "",
             f"Written by `rag eval` on {metrics['date']}.", "",
             "## Versions", ""]
    lines += [f"- {k}: {v or 'not installed'}" for k, v in metrics["versions"].items()]
    lines += ["", "## Settings", "",
              f"- embedder: `{st['embedder']}` on {st['embed_backend']}; chunks of "
              f"{st['chunk_tokens']} tokens ({st['chunk_overlap']} overlap); store {st['store']}",
              f"- k (passages per question): {st['k']}",
              f"- generators: {', '.join(st['generators'])}"
              + (f" (language models: first {st['limit']} items of each set)"
                 if st.get("limit") else ""),
              f"- abstain threshold {st['abstain_threshold']}, support threshold "
              f"{st['support_threshold']}, faithful when ≥ {st['faithful_share']:.0%} of a "
              "sentence's content words are in the passages it cites"]
    if thresholds_path:
        lines.append(f"- gate thresholds: `{_shown(thresholds_path)}`")
    lines += ["", "Figures: retrieval (hit@1, hit@5, MRR over the answer's own retrieved "
              "passages), accuracy (a normalised gold answer occurs in the answer) and token F1 "
              "over answerable items; citation precision (cited passages overlapping the evidence, "
              "over answerable items' citations) and recall (answerable items with a correct "
              "citation); faithfulness over the sentences of answers that did not abstain; "
              "abstain rate over unanswerable items, false-abstain rate over answerable ones; "
              "latency of the whole answer.", ""]
    for name, s in metrics["sets"].items():
        lines += [f"## {name}", "",
                  f"Gold `{_shown(s['gold'])}` ({s['items']} items), "
                  f"corpus `{_shown(s['corpus'])}`.", ""]
        lines += _header("generator")
        for gen, g in s["generators"].items():
            if "skipped" in g:
                lines.append(f"| {gen} | skipped: {g['skipped']} |" + " |" * (len(_COLUMNS) + 1))
                continue
            o = g["overall"]
            lines.append(_row(gen, o, f"{o['items']} ({o['answerable']}/{o['unanswerable']})"))
        lines.append("")
        limits = thresholds_for(thresholds or {}, name, "extractive")
        if limits:
            lines += ["Gate (extractive): " + ", ".join(
                f"{k.removeprefix('max_')} {'≤' if k.startswith('max_') else '≥'} {v}"
                for k, v in limits.items()), ""]
        for gen, g in s["generators"].items():
            if "skipped" in g:
                continue
            lines += [f"### {name}, {gen}, per kind", ""]
            lines += _header("kind")
            for kind, f in g["per_kind"].items():
                lines.append(_row(kind, f, f"{f['items']} ({f['answerable']}/{f['unanswerable']})"))
            lines.append("")
    if misses is not None:
        lines += ["## Gate", ""]
        lines += [f"- missed: {m}" for m in misses] if misses else ["All gated figures pass."]
        lines.append("")
    return "\n".join(lines)


def plot_report(metrics: dict, path: str | Path) -> Path:
    """A PNG comparing generators and kinds: per set, grouped bars of hit@5 (retrieval) and of
    each generator's accuracy per kind (for unanswerable questions: the abstain rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(metrics["sets"].items())
    fig, axes = plt.subplots(len(sets), 1, figsize=(15, 4.4 * len(sets)), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (name, s) in zip(axes[:, 0], sets):
        ran = [(g, v) for g, v in s["generators"].items() if "overall" in v]
        if not ran:
            ax.set_title(f"{name}: nothing ran")
            ax.axis("off")
            continue
        # retrieval does not depend on the generator: take the run with the most items
        base = max(ran, key=lambda gv: gv[1]["items"])[1]
        kinds = ["all"] + [k for k in KINDS if k in base["per_kind"]]

        def fig_of(run, kind, key):
            f = run["overall"] if kind == "all" else run["per_kind"].get(kind, {})
            if kind == "unanswerable" and key == "accuracy":
                key = "abstain_rate"
            return f.get(key)

        series = [("hit@5 (retrieval)", base, "hit_at_5", "0.55")]
        series += [(f"accuracy: {g}" + (f" ({v['items']} items)" if v["items"] < s["items"]
                                         else ""), v, "accuracy", colors[i % 10])
                   for i, (g, v) in enumerate(ran)]
        width = 0.8 / len(series)
        for j, (label, run, key, color) in enumerate(series):
            xs, ys = [], []
            for x, kind in enumerate(kinds):
                value = fig_of(run, kind, key)
                if value is not None:
                    xs.append(x - 0.4 + width * (j + 0.5))
                    ys.append(value)
            bars = ax.bar(xs, ys, width, label=label, color=color)
            ax.bar_label(bars, fmt="%.2f", fontsize=6.5, padding=1, rotation=90 if
                         len(series) > 3 else 0)
        n = {k: (base["overall"] if k == "all" else base["per_kind"][k])["items"] for k in kinds}
        ax.set_xticks(range(len(kinds)),
                      [f"{k}\n(abstained)" if k == "unanswerable" else k for k in kinds])
        ax.set_xticklabels([f"{t.get_text()}\nn={n[k]}" for t, k in
                            zip(ax.get_xticklabels(), kinds)], fontsize=9)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("share")
        ax.set_title(f"{name}: retrieval hit@5 and answer accuracy per kind")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(metrics: dict, folder: str | Path, thresholds: dict | None = None,
                 thresholds_path=None, misses=None) -> tuple[Path, Path]:
    """``report.md`` and ``report.png`` in ``folder``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        md = folder / "report.md"
        md.write_text(render_report(metrics, thresholds, thresholds_path, misses),
                      encoding="utf-8")
        png = plot_report(metrics, folder / "report.png")
    except OSError as e:
        raise RagError(f"cannot write the report in {folder}: {e.strerror}; pass --report DIR") \
            from None
    return md, png
