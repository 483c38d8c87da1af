"""The gate of ``rag eval``: minimum (and maximum) figures per set and generator, read from a
TOML thresholds file, and the figures of an evaluation that miss them."""

from __future__ import annotations

from pathlib import Path

import tomllib

from .errors import RagError

#: The figures a thresholds file may gate; ``max_<figure>`` is an upper bound, the rest minima.
GATED = ("hit_at_1", "hit_at_5", "mrr", "accuracy", "f1", "short_em", "short_f1",
         "citation_precision", "citation_recall", "faithfulness", "abstain_rate",
         "false_abstain_rate")


def load_thresholds(path: str | Path | None, required: bool = False) -> dict:
    """The ``[set]`` tables of a TOML thresholds file, checked. A missing file is no
    thresholds, unless ``required``.

    Keys in ``[seed]`` are minima (``max_<figure>`` an upper bound) for the extractive generator;
    a sub-table ``[seed.<generator>]`` holds figures for another generator.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise RagError(f"thresholds file {path} does not exist; pass --thresholds FILE "
                           "or --no-gate") from None
        return {}
    except OSError as e:
        raise RagError(f"cannot read thresholds file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise RagError(f"{path}: not valid TOML ({e})") from None

    def check(table: dict, where: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict) and where.count(".") == 0:
                check(value, f"{where}.{key}")
                continue
            figure = key.removeprefix("max_")
            if figure not in GATED:
                raise RagError(f"{path}: [{where}] {key} is not a figure that can be gated; "
                               f"use {', '.join(GATED)} (or max_<figure>)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RagError(f"{path}: [{where}] {key} must be a number, got {value!r}")

    for name, table in data.items():
        if not isinstance(table, dict):
            raise RagError(f"{path}: {name} must be a [table] of figures for the set {name!r}")
        check(table, name)
    return data


def thresholds_for(thresholds: dict, set_name: str, generator: str) -> dict:
    """The figures gating ``generator`` on ``set_name``: the set's top-level keys for the
    extractive generator, ``[set.<generator>]`` for another.

    >>> t = {"seed": {"accuracy": 0.5, "smollm2": {"faithfulness": 0.8}}}
    >>> thresholds_for(t, "seed", "extractive"), thresholds_for(t, "seed", "smollm2")
    ({'accuracy': 0.5}, {'faithfulness': 0.8})
    >>> thresholds_for(t, "newsbench", "extractive")
    {}
    """
    table = thresholds.get(set_name, {})
    if generator == "extractive":
        return {k: v for k, v in table.items() if not isinstance(v, dict)}
    sub = table.get(generator, {})
    return dict(sub) if isinstance(sub, dict) else {}


def gate(figures: dict, limits: dict, label: str = "") -> list[str]:
    """The missed limits, one line each ("seed: accuracy 0.41 < 0.43"); [] when all pass.

    A figure that could not be measured (``None``: no items of that sort) is not gated.

    >>> gate({"accuracy": 0.41, "false_abstain_rate": 0.12}, {"accuracy": 0.43}, "seed")
    ['seed: accuracy 0.41 < 0.43']
    >>> gate({"false_abstain_rate": 0.12}, {"max_false_abstain_rate": 0.1})
    ['false_abstain_rate 0.12 > 0.1']
    >>> gate({"abstain_rate": None}, {"abstain_rate": 0.5})
    []
    """
    misses = []
    prefix = f"{label}: " if label else ""
    for key, limit in limits.items():
        upper = key.startswith("max_")
        figure = key.removeprefix("max_")
        value = figures.get(figure)
        if value is None:
            continue
        if (value > limit) if upper else (value < limit):
            misses.append(f"{prefix}{figure} {value:.4g} {'>' if upper else '<'} {limit:.4g}")
    return misses


def check_gate(metrics: dict, thresholds: dict) -> list[str]:
    """Every miss of the thresholds in an evaluation's metrics
    (:func:`rag.evaluate.evaluate_sets`).

    >>> metrics = {"sets": {"seed": {"generators": {
    ...     "extractive": {"overall": {"accuracy": 0.52}},
    ...     "smollm2": {"skipped": "no weights"}}}}}
    >>> check_gate(metrics, {"seed": {"accuracy": 0.6, "smollm2": {"accuracy": 0.3}}})
    ['seed: accuracy 0.52 < 0.6']
    """
    misses = []
    for set_name, s in metrics["sets"].items():
        for generator, g in s["generators"].items():
            limits = thresholds_for(thresholds, set_name, generator)
            if limits and "overall" in g:
                label = set_name if generator == "extractive" else f"{set_name} ({generator})"
                misses += gate(g["overall"], limits, label)
    return misses

