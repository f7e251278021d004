"""What the selection chooses between: candidates (override sets of a config, the dotted keys
of ``--set`` and ``xhsi sweep``), when a run selects at all, and the checks of the
[selection] table that ``xhsi validate`` runs before anything is read or written."""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, XhsiError

#: Problems that select when the config leaves something to choose (``select = "untuned"``);
#: the others (the mixtures, whose spatial priors are set per component) only when asked.
UNTUNED_PROBLEMS = ("fusion", "deconvolution")
#: The tables a candidate may override: the rest (grid, observations, data) is shared.
CANDIDATE_TABLES = ("regularizers", "solver", "problem", "components")
#: The default grid of a mixture's amplitude prior (``[[components]] amplitude_k``, in σ of
#: each map's noise; 0: none), one value for every component that fits its amplitude.
#: Measured on bench/unmixing_suite.py's 4 scenes × 3 count levels (docs/unmixing.md,
#: "Choosing the amplitude prior"): every value of it is the held-out choice somewhere.
AMPLITUDE_K_GRID = (0.0, 0.5, 1.0, 2.0)
#: Iterations of each candidate fit when neither [selection] nor [solver] gives max_iter.
DEFAULT_BUDGET = 500  # what a run without selection does ([solver] max_iter default)
#: The regularisers a fusion or deconvolution run chooses between when its config has no
#: [[regularizers]] key at all (and no [solver] max_iter): each plugin's own grid, as if
#: named without options. On bench/fusion_suite.py's 9 scenes (docs/fusion.md, "The scene
#: suite") the untuned run beats both data-only baselines on 7 with them and on 2 with the
#: stopping iteration alone; the unregularised path is not among the candidates, because
#: its held-out deviance is the lower one on scenes where its spectra are far worse (shell,
#: cluster). ``regularizers = []`` written in the config keeps the run unregularised.
DEFAULT_REGULARIZERS = ("lowrank_pca", "sobolev")



@dataclass
class Candidate:
    """One point of the selection: ``overrides`` ({dotted key: value}, applied to the run's
    config as ``--set`` would) and a ``name`` for reports."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


def assignments(overrides: dict[str, Any]) -> list[str]:
    """The overrides as ``--set`` strings (``key=TOML value``), as ``xhsi sweep`` writes them."""
    from ..tomlio import format_value

    return [f"{key}={format_value(value)}" for key, value in overrides.items()]


def _given(cfg) -> dict:
    """The config's table as read (keys the user gave), or its full table for a Config
    built in code."""
    return cfg._raw if getattr(cfg, "_raw", None) is not None else cfg.to_dict()


def _untuned_regularizers(cfg) -> list[int]:
    """Indices of the [[regularizers]] given with nothing chosen by hand: no options (for a
    regulariser that has options), no weight (for one whose only parameter is its weight)."""
    from .. import plugins
    from ..config import options_schema
    from ..schema import NoOptions

    raw = getattr(cfg, "_raw", None)
    if raw is None:
        return []
    out = []
    for i, table in enumerate(raw.get("regularizers") or []):
        has_options = options_schema(plugins.get("regularizer", cfg.regularizers[i].name)) is not NoOptions
        if (not table.get("options")) if has_options else ("weight" not in table):
            out.append(i)
    return out


def _grid_of(name: str, cfg) -> dict[str, tuple]:
    """Regulariser ``name``'s selection grid for ``cfg``'s sky cube (``selection_grid_for``;
    a plugin without it: its ``selection_grid``)."""
    from .. import plugins
    from ..problems.checks import model_grid

    cls = plugins.get("regularizer", name)
    if hasattr(cls, "selection_grid_for") and cfg.model is not None:
        return dict(cls.selection_grid_for(tuple(model_grid(cfg).shape)))
    return dict(getattr(cls, "selection_grid", None) or {})


def _regularizers_left_out(cfg) -> bool:
    """Whether a fusion or deconvolution config has no [[regularizers]] key at all (not even
    ``regularizers = []``), so that the run chooses ``DEFAULT_REGULARIZERS``."""
    raw = getattr(cfg, "_raw", None)
    return raw is not None and "regularizers" not in raw and cfg.run.problem in UNTUNED_PROBLEMS


def _as_tables(names, overrides: dict[str, Any]) -> list[dict]:
    """``names`` as [[regularizers]] tables with ``overrides`` (``regularizers[i].*`` keys) applied."""
    from ..config import apply_override

    data: dict = {"regularizers": [{"name": name} for name in names]}
    for assignment in assignments(overrides):
        apply_override(data, assignment)
    return data["regularizers"]


def default_candidates(cfg) -> list[Candidate]:
    """The candidates of ``cfg`` when [selection] names none: the cartesian product of the
    default grids (``Regularizer.selection_grid``, declared by each plugin) of its regularisers given without options (with ``select =
    "auto"``: of every regulariser with a grid, when none is untuned); of
    ``DEFAULT_REGULARIZERS``' grids when the config has no [[regularizers]] key (each
    candidate then sets the whole ``regularizers`` list). One candidate with no overrides
    when nothing has a grid (``regularizers = []``): then only the stopping iteration is
    chosen. A problem that declares its own (``selection_candidates(config)``, e.g. the
    mixtures' ``mixture_candidates``) gives them."""
    from .. import plugins
    from ..tomlio import format_value

    own = getattr(plugins.get("problem", cfg.run.problem), "selection_candidates", None)
    if own is not None:
        return own(cfg)
    left_out = _regularizers_left_out(cfg)
    if left_out:
        named = list(enumerate(DEFAULT_REGULARIZERS))
    else:
        untuned = _untuned_regularizers(cfg)
        if not untuned and cfg.selection is not None and cfg.selection.select == "auto":
            untuned = list(range(len(cfg.regularizers)))
        named = [(i, cfg.regularizers[i].name) for i in untuned]
    axes = []
    for i, name in named:
        for key, values in _grid_of(name, cfg).items():
            axes.append([(f"regularizers[{i}].{key}", f"{name}.{key.removeprefix('options.')}", v) for v in values])
    if not axes:
        return [Candidate("as configured", {})]
    out = []
    for combo in itertools.product(*axes):
        overrides = {key: value for key, _, value in combo}
        if left_out:
            overrides = {"regularizers": _as_tables(DEFAULT_REGULARIZERS, overrides)}
        out.append(Candidate(", ".join(f"{label}={format_value(value)}" for _, label, value in combo), overrides))
    return out


def mixture_candidates(cfg) -> list[Candidate]:
    """The default candidates of a mixture (unmixing, fusion_unmixing): ``AMPLITUDE_K_GRID``
    as the ``amplitude_k`` of every component that fits its amplitude map (one candidate
    with no overrides when none does: then only the stopping iteration is chosen)."""
    fitted = [c.name for c in cfg.components if not c.fixed_amplitude]
    if not fitted:
        return [Candidate("as configured", {})]
    return [Candidate(f"amplitude_k={k:g}" if k > 0 else "no amplitude prior",
                      {f"components.{name}.amplitude_k": float(k) for name in fitted}) for k in AMPLITUDE_K_GRID]


def candidates(cfg) -> list[Candidate]:
    """[selection] candidates when given (named by their overrides), else the defaults."""
    given = cfg.selection.candidates if cfg.selection is not None else None
    if given is None:
        return default_candidates(cfg)
    return [Candidate(", ".join(assignments(c)) or "(no overrides)", dict(c)) for c in given]


def selection_reason(cfg) -> str | None:
    """Why the run selects (a sentence for the summary), or None when it does not."""
    select = cfg.selection.select if cfg.selection is not None else "untuned"
    if select == "off":
        return None
    if select == "auto":
        return "[selection] select = \"auto\""
    if cfg.run.problem not in UNTUNED_PROBLEMS or cfg.run.likelihood != "poisson" or getattr(cfg, "_raw", None) is None:
        return None
    untuned = _untuned_regularizers(cfg)
    if untuned:
        names = ", ".join(f"`{cfg.regularizers[i].name}`" for i in untuned)
        return f"the regulariser(s) {names} are given with no options"
    if not cfg.regularizers and "max_iter" not in (cfg._raw.get("solver") or {}):
        if _regularizers_left_out(cfg):
            return (f"no [[regularizers]] and no [solver] max_iter: the regularisers "
                    f"({', '.join(DEFAULT_REGULARIZERS)}), their options and the stopping iteration are chosen "
                    "from the data (write regularizers = [] to fit without one)")
        return "regularizers = [] and no [solver] max_iter: the stopping iteration is chosen from the data"
    return None


def untuned_table(cfg) -> dict:
    """The config's full table (``to_dict``: every default written, paths absolute) without
    the keys whose absence makes it select (``selection_reason``, ``budget``): the
    [[regularizers]] key, a regulariser's options or weight, [solver] max_iter, where the
    user gave none. A config written from it (e.g. a tile's, ``xhsi tiles``) selects as the
    given one does, with the same candidates and budget."""
    data = cfg.to_dict()
    raw = getattr(cfg, "_raw", None)
    if raw is None:
        return data
    if "regularizers" not in raw:
        data.pop("regularizers", None)
    for given, table in zip(raw.get("regularizers") or [], data.get("regularizers") or []):
        for key in ("options", "weight"):
            if key not in given:
                table.pop(key, None)
    if "max_iter" not in (raw.get("solver") or {}):
        data.get("solver", {}).pop("max_iter", None)
    return data


def budget(cfg) -> int:
    """Iterations of each candidate fit: [selection] max_iter, else a [solver] max_iter the
    user gave, else ``DEFAULT_BUDGET``."""
    if cfg.selection is not None and cfg.selection.max_iter is not None:
        return cfg.selection.max_iter
    solver = (_given(cfg).get("solver") or {})
    return int(solver["max_iter"]) if "max_iter" in solver else DEFAULT_BUDGET


def candidate_config(cfg, overrides: dict[str, Any], extra: dict[str, Any] | None = None):
    """``cfg`` with ``overrides`` (and ``extra``) applied to its table as read, validated
    like a loaded config (plugin options included)."""
    from ..config import apply_override, config_from_dict

    data = copy.deepcopy(_given(cfg))
    for assignment in assignments({**overrides, **(extra or {})}):
        apply_override(data, assignment)
    source = cfg.source
    base = getattr(cfg, "_base_dir", None) or (Path(source).resolve().parent if source is not None else Path("."))
    out = config_from_dict(data, str(source) if source is not None else "<config>", base)
    out._source = source
    return out


def check_selection(cfg) -> list[Candidate] | None:
    """The checks of the [selection] table a user's input can fail, before anything is read
    or written: the problem and likelihood it applies to, and every candidate's config
    (its keys and values, through the problem's own ``check_config``). Returns the
    candidates, or None when the run does not select."""
    from .. import plugins

    where = f"{cfg.source or '<config>'}: [selection]"
    if selection_reason(cfg) is None:
        return None
    problem_cls = plugins.get("problem", cfg.run.problem)
    if getattr(problem_cls, "selection_fit", None) is None:  # the problems that say how to fit a fold
        selectable = [name for name in plugins.available("problem")
                      if getattr(plugins.get("problem", name), "selection_fit", None) is not None]
        raise ConfigError(f"{where}: select = \"auto\" works for the problems {', '.join(selectable)}, not "
                          f"`{cfg.run.problem}`; set select = \"off\".")
    if cfg.run.likelihood != "poisson":
        raise ConfigError(f"{where}: the selection scores fits by Poisson likelihood, but [run] likelihood = "
                          f"\"{cfg.run.likelihood}\"; set select = \"off\" and choose the options by hand.")
    found = candidates(cfg)
    for i, cand in enumerate(found):
        shared = [key for key in cand.overrides if key.split(".")[0].split("[")[0] not in CANDIDATE_TABLES]
        if shared:
            raise ConfigError(f"{where}: candidate {i} ({cand.name}) sets `{shared[0]}`: candidates may change "
                              f"only {', '.join(f'[{t}]' for t in CANDIDATE_TABLES)}, since every fit shares the "
                              "run's grid, operators and counts. Run a sweep (docs/sweeps.md) to compare those.")
        try:
            problem_cls.check_config(candidate_config(cfg, cand.overrides))
        except XhsiError as exc:
            raise ConfigError(f"{where}: candidate {i} ({cand.name}): {exc}") from None
    return found
