"""Command line: ``cathodefem {mesh,solve,compare,ensemble,cycle,rate,rve,symmetric,
eis,gitt,show-spec}``.

Every subcommand takes an optional case TOML file (default: the packaged default study) and
``--set key=value`` overrides with dotted keys (``--set section.width_um=4``). User mistakes
(invalid spec, unknown key, wrong unit, bad option) end with a one-line message and exit
status 2, and leave no result folder behind. Runs unchanged under ``mpiexec -n N``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import socket
import sys
import threading
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["main"]

log = logging.getLogger("cathodefem")

#: commands that use the case's [parameters] table (the half-cell model)
ELECTROCHEMISTRY_COMMANDS = ("cycle", "rate", "gitt", "eis", "symmetric")


def _default_case_path() -> Path:
    return Path(str(resources.files("cases") / "data" / "default.toml"))


def _merge_set(data: dict[str, Any], assignment: str) -> None:
    from meshes.spec import SpecError

    if "=" not in assignment:
        raise SpecError(f"--set {assignment!r}: expected key=value, e.g. section.width_um=4")
    key, raw = assignment.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string such as cut or "34 um"
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"--set {key}: {part} is not a table")
    node[parts[-1]] = value


def load_case_with_overrides(path: str | None, sets: list[str]) -> Any:
    from meshes.spec import load_case, read_case_toml

    data = read_case_toml(Path(path) if path else _default_case_path())
    for s in sets:
        _merge_set(data, s)
    return load_case(data)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cathodefem",
        description="Finite-element transport in gradient nanowire and tape-cast cathodes.")
    from cases.output import cathodefem_version

    ap.add_argument("--version", action="version",
                    version=f"cathodefem {cathodefem_version() or '(not installed)'}")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("mesh", "build and write both section meshes (XDMF, PNG)"),
                       ("solve", "mesh and solve one cathode"),
                       ("compare", "the gradient-vs-homogeneous study (both cathodes)"),
                       ("ensemble", "the study over several seeds: mean and 95 % CI"),
                       ("cycle", "run the case's [protocol] on the half cell of each cathode"),
                       ("rate", "rate capability: discharge each cathode at several currents"),
                       ("rve", "3D voxel RVEs of both cathodes: conductivity tensors, "
                               "percolation, seeds and depths"),
                       ("symmetric", "Li | SSE | Li polarization test of the separator "
                                     "([symmetric]; paper Fig. S6)"),
                       ("eis", "impedance spectra of both half cells about rest ([eis]; "
                               "paper Fig. 3j)"),
                       ("gitt", "galvanostatic intermittent titration of both half cells "
                                "([gitt]; paper Fig. 3h-i)"),
                       ("show-spec", "print the validated case with derived quantities")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("case", nargs="?", help="case TOML file (default: packaged default)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a case value, e.g. --set section.width_um=4")
        p.add_argument("--out", default=None, help="results folder (default: results/<case>)")
        p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
        if name == "solve":
            p.add_argument("--cathode", choices=["gradient", "homogeneous"], required=True)
        if name in ("cycle", "rate", "eis", "gitt"):
            p.add_argument("--cathode", choices=["gradient", "homogeneous"], default=None,
                           help="one cathode only (default: both)")
        if name in ("cycle", "gitt"):
            p.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                           help="save the state every N time steps (in <out>.checkpoint)")
            p.add_argument("--resume", action="store_true",
                           help="continue from the checkpoint of an interrupted run")
        if name == "rate":
            p.add_argument("--resume", action="store_true",
                           help="take the finished rates (and seeds or sensitivity studies) "
                                "of an interrupted run over from <out>.incomplete and run the "
                                "rest")
            p.add_argument("--rates", default="50,100,200,300", metavar="I1,I2,...",
                           help="specific currents in mA/g (default 50,100,200,300)")
            p.add_argument("--seeds", type=int, default=1,
                           help="number of realizations, from the geometry's seed on (box.seed "
                                "or section.seed); > 1 gives mean and 95 %% CI (default 1)")
            p.add_argument("--sensitivity", action="store_true",
                           help="the study once with the case's parameters and once per value "
                                "of each [[sensitivity.vary]] parameter, one at a time "
                                "(default: the assumed transport and kinetic parameters over "
                                "their ranges, fem.electrochem.parameters.ASSUMPTION_RANGES)")
        if name == "rve":
            p.add_argument("--cathode", choices=["gradient", "homogeneous"], default=None,
                           help="one cathode only (default: both)")
            p.add_argument("--seeds", type=int, default=1,
                           help="number of seeds, from box.seed on (default 1)")
            p.add_argument("--resume", action="store_true",
                           help="take the finished boxes of an interrupted run over from "
                                "<out>.incomplete and run the rest")
            p.add_argument("--depths", default=None, metavar="F1,F2,...",
                           help="box centres as fractions of the composite layer (0: collector "
                                "side; default box.z_center_fraction)")
        if name == "ensemble":
            p.add_argument("--seeds", type=int, default=5,
                           help="number of seeds, from section.seed on (default 5)")
    text = "one figure of finished result folders, e.g. gitt runs of both cathodes"
    p = sub.add_parser("plot", help=text, description=text)
    p.add_argument("what", choices=["gitt"], help="the command whose results to draw")
    p.add_argument("folders", nargs="+", help="result folders (--out of the runs)")
    p.add_argument("--labels", default=None, metavar="A,B,...",
                   help="one label per folder, separated by commas (default: the folder "
                        "names)")
    p.add_argument("--out", default="gitt_comparison.png",
                   help="figure file: .png, .pdf or .svg (default gitt_comparison.png)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return ap


def _run(args: argparse.Namespace) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    level = logging.WARNING if args.quiet or comm.rank != 0 else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stdout, force=True)
    if args.command == "plot":
        from cases.gitt import plot_gitt_runs

        labels = args.labels.split(",") if args.labels is not None else None
        error = None
        if comm.rank == 0:  # one figure: rank 0 draws, every rank ends alike
            try:
                drawn = plot_gitt_runs([Path(f) for f in args.folders], Path(args.out), labels)
                log.info(f"{len(drawn)} curves ({'; '.join(drawn)}) written to {args.out}")
            except ValueError as e:
                error = str(e)
        error = comm.bcast(error, root=0)
        if error is not None:
            raise ValueError(error)
        return 0
    case = load_case_with_overrides(args.case, args.set)
    out = Path(args.out) if args.out else Path("results") / case.name
    if args.command != "show-spec":
        _check_before_running(args, case, out, comm)
    if case.parameters and args.command not in ELECTROCHEMISTRY_COMMANDS:
        if comm.rank == 0:
            log.warning(f"[parameters] is used by the electrochemistry commands "
                        f"({', '.join(ELECTROCHEMISTRY_COMMANDS)}), not by '{args.command}' "
                        f"(its conductivities are fem.parameters')")
    if case.sensitivity and not getattr(args, "sensitivity", False) \
            and args.command != "show-spec" and comm.rank == 0:
        log.warning("[sensitivity] is used by 'rate --sensitivity' only")
    if args.command == "show-spec":
        import json
        from dataclasses import asdict

        from meshes.spec import derive_gradient, derive_homogeneous, spec_to_dict

        _check_protocol_and_parameters(case)

        if comm.rank == 0:
            print(json.dumps({"case": spec_to_dict(case),
                              "derived": {"gradient": asdict(derive_gradient(case.gradient)),
                                          "homogeneous": asdict(derive_homogeneous(
                                              case.homogeneous))}}, indent=2))
        return 0
    from cases import study

    if args.command == "mesh":
        study.mesh_case(case, out, comm)
    elif args.command == "ensemble":
        from cases import ensemble

        result = ensemble.run_ensemble(case, out, args.seeds, comm)
        if comm.rank == 0:
            ensemble.print_ensemble(result)
    elif args.command == "symmetric":
        from cases import symmetric

        result = symmetric.run_symmetric(case, out, comm)
        if comm.rank == 0:
            symmetric.print_symmetric(result)
    elif args.command in ("cycle", "rate"):
        return _run_electrochemistry(args, case, out, comm)
    elif args.command == "eis":
        from cases import eis

        kinds = (args.cathode,) if args.cathode else eis.KINDS
        result = eis.run_eis(case, out, comm, kinds=kinds)
        if comm.rank == 0:
            eis.print_eis(result, kinds)
        return _exit_status(result, kinds, out, comm)
    elif args.command == "gitt":
        from cases import gitt

        _check_checkpoint_options(args, out)
        kinds = (args.cathode,) if args.cathode else gitt.KINDS
        try:
            result = gitt.run_gitt(case, out, comm, kinds=kinds, progress=not args.quiet,
                                   checkpoint_every=args.checkpoint_every, resume=args.resume)
        except KeyboardInterrupt:
            return _interrupted_with_checkpoints(out, args.checkpoint_every, comm)
        if comm.rank == 0:
            gitt.print_gitt(result, kinds)
        return _exit_status(result, kinds, out, comm)
    elif args.command == "rve":
        from cases import rve

        try:
            depths = ([float(f) for f in args.depths.split(",") if f.strip()]
                      if args.depths else None)
        except ValueError:
            raise ValueError(f"--depths {args.depths!r}: expected fractions in [0, 1], "
                             f"e.g. 0.1,0.5,0.9") from None
        if args.seeds < 1:
            raise ValueError(f"--seeds {args.seeds}: must be >= 1")
        kept = _resumable(args, out)
        started = time.time()
        try:
            summary = rve.run_rve(case, out, comm, kinds=(args.cathode,) if args.cathode
                                  else rve.KINDS, seeds=args.seeds, depths=depths,
                                  resume=args.resume)
        except KeyboardInterrupt:
            return _interrupted_keeping(kept, started, "boxes", args.resume, comm)
        if comm.rank == 0:
            rve.print_rve(summary)
    elif args.command == "solve":
        study.run_study(case, out, comm, kinds=(args.cathode,))
    else:
        summary = study.run_study(case, out, comm)
        if comm.rank == 0:
            print_table(summary)
    if comm.rank == 0:
        log.info(f"results written to {out}")
    return 0


def _check_protocol_and_parameters(case: Any) -> None:
    """The checks the electrochemistry commands make of [protocol] and [parameters], for
    show-spec: a one-line ValueError."""
    from cases.cycling import rate_settings
    from fem.electrochem.parameters import default_parameters
    from fem.electrochem.protocol import protocol_from_dict

    params = default_parameters(case.electrochemistry.temperature_K).with_overrides(
        case.parameters)
    if "step" in case.protocol:  # a cycle protocol
        protocol_from_dict(case.protocol, capacity_mAh_g=params.theoretical_capacity_mAh_g)
    elif case.protocol:  # the settings of rate and gitt, which add their own steps
        base, _ = rate_settings(case)
        protocol_from_dict({**base, "step": [{"kind": "rest", "duration_s": 1.0}]})
    if case.sensitivity:
        from cases.sensitivity import variations

        variations(case, params)


def _check_before_running(args: argparse.Namespace, case: Any, out: Path, comm: Any) -> None:
    """Refuse, before anything is built, a result folder the run could not write or would
    wrongly replace, and seed ranges past the largest seed (one-line ValueError)."""
    from cases.output import check_result_folder
    from meshes.spec import with_seed

    error = None
    if comm.rank == 0:
        try:
            check_result_folder(out)
        except ValueError as e:
            error = str(e)
    error = comm.bcast(error, root=0)
    if error is not None:
        raise ValueError(error)
    seeds = getattr(args, "seeds", 1)
    if seeds > 1:
        from cases.cycling import seed_owner

        where = {"ensemble": "section", "rve": "box"}.get(args.command) or seed_owner(case)
        last = getattr(case, where).seed + seeds - 1
        with_seed(case, last, where)  # SpecError if the last seed is out of range


def _exit_status(summary: dict[str, Any], kinds: Any, out: Path, comm: Any) -> int:
    """1 (with one line per cathode on stderr) when a cathode's run neither completed nor
    was blocked; 0 otherwise."""
    failed = {k: summary[k]["status"] for k in kinds
              if summary[k]["status"] not in ("completed", "blocked")}
    if comm.rank == 0:
        log.info(f"results written to {out}")
        for k, s in failed.items():
            print(f"cathodefem: {k}: {s}", file=sys.stderr)
    return 1 if failed else 0


def _check_checkpoint_options(args: argparse.Namespace, out: Path) -> None:
    from cases.cycling import checkpoint_folder

    ck = checkpoint_folder(out)
    if args.checkpoint_every < 0:
        raise ValueError(f"--checkpoint-every {args.checkpoint_every}: must be >= 0")
    if args.resume and not ck.is_dir():
        raise ValueError(f"--resume: no checkpoint in {ck} "
                         + (f"(the run in {out} is complete: nothing to resume)"
                            if (out / "summary.json").is_file() else
                            "(a run with --checkpoint-every N keeps one; run without --resume "
                            "to start afresh)"))
    if not args.resume and ck.is_dir():
        raise ValueError(f"{ck} holds the checkpoint of an interrupted run: continue it with "
                         f"--resume, or remove it to start afresh")
    if args.checkpoint_every:
        _check_writable(ck if ck.is_dir() else ck.parent, "--checkpoint-every")


def _check_writable(folder: Path, option: str) -> None:
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option}: cannot write in {folder} (permission denied)")


def _interrupted_with_checkpoints(out: Path, every: int, comm: Any) -> int:
    """Say where an interrupted cycle or gitt run can continue from; exit status 130."""
    from cases.cycling import checkpoint_folder

    ck = checkpoint_folder(out)
    if comm.rank == 0:
        where = (f"continue from the last checkpoint (in {ck}) with --resume" if ck.is_dir()
                 else f"nothing was kept (no checkpoint yet: one is saved every {every} time "
                      f"steps)" if every
                 else "nothing was kept (--checkpoint-every N keeps the state)")
        print(f"cathodefem: interrupted; {where}", file=sys.stderr)
    return 130


def _resumable(args: argparse.Namespace, out: Path) -> Path:
    """``<out>.incomplete``, where ``rate`` and ``rve`` keep an interrupted run; with
    ``--resume`` it must hold one."""
    from cases.output import incomplete_path

    kept = incomplete_path(out)
    if args.resume and not (kept / "summary.json").is_file():
        # a run killed outright (SIGKILL) never renamed its staging folder
        killed = sorted((p for p in out.parent.glob(f".{out.name}.partial-*")
                         if (p / "summary.json").is_file()), key=lambda p: p.stat().st_mtime)
        raise ValueError(f"--resume: no interrupted run in {kept} "
                         + (f"(the run in {out} is complete: nothing to resume)"
                            if (out / "summary.json").is_file() else
                            f"(a run killed outright left {killed[-1]}: if no run is writing "
                            f"there any more, rename it to {kept} and resume)" if killed else
                            f"(an interrupted {args.command} run keeps what it finished "
                            f"there); run without --resume to start afresh"))
    if not args.resume and (kept / "summary.json").is_file():
        raise ValueError(f"{kept} holds an interrupted run: continue it with --resume, or "
                         f"remove it to start afresh")
    if args.resume:
        _check_writable(kept, "--resume")
    return kept


def _interrupted_keeping(kept: Path, started: float, done: str, resumed: bool, comm: Any,
                         records: bool = False) -> int:
    """Say what an interrupted ``rate`` or ``rve`` run kept in ``kept``; exit status 130."""
    if comm.rank == 0:
        fresh = kept.is_dir() and kept.stat().st_mtime >= started  # not an old one
        interrupted = (", and the records of the interrupted one up to the interrupt,"
                       if records else "")
        one = {"rates": "rate", "seeds": "seed", "boxes": "box", "studies": "study"}[done]
        where = (f"the finished {done}{interrupted} are in {kept}; continue with --resume"
                 if fresh else
                 f"no further {one} had finished; {kept} is as it was; continue with "
                 f"--resume" if resumed and kept.is_dir() else
                 f"no {one} had finished; nothing was kept")
        print(f"cathodefem: interrupted; {where}", file=sys.stderr)
    return 130


def _run_electrochemistry(args: argparse.Namespace, case: Any, out: Path, comm: Any) -> int:
    from cases import cycling
    from meshes.build import KINDS

    kinds = (args.cathode,) if args.cathode else KINDS
    progress = not args.quiet
    if args.command == "cycle":
        _check_checkpoint_options(args, out)
        try:
            summary = cycling.run_cycling(case, out, comm, kinds=kinds, progress=progress,
                                          checkpoint_every=args.checkpoint_every,
                                          resume=args.resume)
        except KeyboardInterrupt:
            return _interrupted_with_checkpoints(out, args.checkpoint_every, comm)
        statuses = {k: summary[k]["status"] for k in kinds}
    else:
        try:
            rates = [float(r) for r in args.rates.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"--rates {args.rates!r}: expected numbers in mA/g, e.g. "
                             f"50,100,200,300") from None
        if args.sensitivity and args.seeds != 1:
            raise ValueError(f"--sensitivity with --seeds {args.seeds}: one realization per "
                             f"sensitivity study; run without --seeds")
        kept = _resumable(args, out)
        started = time.time()
        try:
            if args.sensitivity:
                from cases.sensitivity import print_sensitivity, run_rate_sensitivity

                summary = run_rate_sensitivity(case, out, rates, comm, kinds=kinds,
                                               progress=progress, resume=args.resume)
                if comm.rank == 0:
                    print_sensitivity(summary)
            elif args.seeds != 1:
                summary = cycling.run_rate_ensemble(case, out, rates, args.seeds, comm,
                                                    kinds=kinds, progress=progress,
                                                    resume=args.resume)
            else:
                summary = cycling.run_rate_study(case, out, rates, comm, kinds=kinds,
                                                 progress=progress,
                                                 resume_from=kept if args.resume else None)
        except KeyboardInterrupt:
            done = ("studies" if args.sensitivity else "seeds" if args.seeds != 1
                    else "rates")
            return _interrupted_keeping(kept, started, done, args.resume, comm, records=True)
        if args.sensitivity:
            statuses = {f"{k} {b['rate_mA_g']:g} mA/g ({r.get('parameter', 'base')} "
                        f"{r.get('value', '')})".replace(" )", ")"): r[f"{k}_status"]
                        for b in summary["rates"] for r in [b["base"], *b["variations"]]
                        for k in kinds}
        elif args.seeds != 1:
            statuses = {f"{k} {r['rate_mA_g']:g} mA/g seed {s}": st
                        for k in kinds for r in summary[k]["rates"]
                        for s, st in zip(summary["seeds"], r["status"], strict=True)}
        else:
            statuses = {f"{k} {r['rate_mA_g']:g} mA/g": r["status"]
                        for k in kinds for r in summary[k]["rates"]}
        if comm.rank == 0 and not args.sensitivity:
            _print_rates(summary, rates, kinds)
    failed = {k: s for k, s in statuses.items() if s != "completed"}
    if comm.rank == 0:
        log.info(f"results written to {out}")
        for k, s in failed.items():
            print(f"cathodefem: {k}: {s}", file=sys.stderr)
    return 1 if failed else 0


def _print_rates(summary: dict[str, Any], rates: list[float], kinds: Any) -> None:
    """Capacity per rate and cathode; for a seed ensemble mean [95 % CI] over the seeds."""
    from cases.output import capacity_text

    ensemble = "seeds" in summary
    width = 26 if ensemble else 14
    title = "capacity [mAh/g]" + (f", mean [95 % CI] of {len(summary['seeds'])} seeds"
                                  if ensemble else "")
    print(f"\n{title}\n{'specific current [mA/g]':24s}" + "".join(f"{k:>{width}s}"
                                                                    for k in kinds))
    for i, rate in enumerate(rates):
        cells = []
        for k in kinds:
            r = summary[k]["rates"][i]
            text = capacity_text(r["capacity_mAh_g"])
            if ensemble:
                lo, hi = r["capacity_ci95_mAh_g"]
                text += f" [{lo:.1f}, {hi:.1f}]"
            cells.append(f"{text:>{width}s}")
        print(f"{rate:<24g}" + "".join(cells))
    stalled = []
    for k in kinds:
        for r in summary[k]["rates"]:
            ends = r["stopped_by"] if ensemble else [r["stopped_by"]]
            seeds = summary["seeds"] if ensemble else [None]
            stalled += [f"{k} {r['rate_mA_g']:g} mA/g" + (f" seed {s}" if s is not None else "")
                        for s, e in zip(seeds, ends, strict=True) if e == "stalled"]
    if stalled:
        print(f"note: {len(stalled)} discharge(s) stalled above the cut-off: "
              f"protocol.stall_steps time steps in a row below protocol.stall_dt_s (seen at "
              f"a limiting current where little of the interface is connected); the capacity "
              f"reached is reported: {', '.join(stalled)}")
    if ensemble:
        failed = sum(summary[k]["rates"][i]["failed_count"] for k in kinds
                     for i in range(len(rates)))
        if failed:
            print(f"note: {failed} run(s) stopped before the cut-off; their capacity (a lower "
                  f"bound) is in the statistics")


def print_table(summary: dict[str, Any]) -> None:
    from cases.study import table_rows

    rows = table_rows(summary)
    print(f"\n{'quantity':42s} {'gradient':>13s} {'homogeneous':>13s}")
    for name, g, h in rows:
        print(f"{name:42s} {_fmt(g):>13s} {_fmt(h):>13s}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    v = float(v)
    if v == float("inf"):
        return "inf"
    return f"{v:.4g}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from cases import output

    output.command_line = ["cathodefem", *(sys.argv[1:] if argv is None else argv)]
    from meshes.spec import SpecError

    # SIGTERM (a batch job's time limit, `kill`) stops a run like Ctrl-C: finished parts
    # and the records up to the interrupt are kept in <out>.incomplete. PETSc installs its
    # own SIGTERM handler (abort, nothing kept) when it initializes, so it is initialized
    # first and then replaced.
    # On several ranks a signal outside a time step ends the whole job at once (see
    # _end_job); inside one, cases.cycling stops every rank after the step.
    previous = signal.getsignal(signal.SIGTERM)
    previous_int = signal.getsignal(signal.SIGINT)
    watchdog: _BuildWatchdog | None = None
    if threading.current_thread() is not threading.main_thread():
        previous = None  # handlers can only be set in the main thread: leave them
    if previous == signal.SIG_DFL:
        from mpi4py import MPI  # isort: split
        from petsc4py import PETSc  # noqa: F401

        several = MPI.COMM_WORLD.size > 1
        signal.signal(signal.SIGTERM, _end_job if several else _terminate)
        if several:
            signal.signal(signal.SIGINT, _end_job)
        else:
            watchdog = _BuildWatchdog()
    try:
        return _run(args)
    except (SpecError, ValueError) as e:
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            print(f"cathodefem: error: {e}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemError) as e:
        # a signal inside a callback from compiled code (petsc4py) comes back as SystemError
        if isinstance(e, SystemError) and not _caused_by_interrupt(e):
            raise
        from mpi4py import MPI

        if MPI.COMM_WORLD.rank == 0:
            print("cathodefem: interrupted", file=sys.stderr)
        return 130
    finally:
        cycling = sys.modules.get("cases.cycling")
        if cycling is not None:  # a stop asked in a command's last step ends with it
            cycling._DeferredStop.pending = False
        if watchdog is not None:
            watchdog.close()
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, previous_int)


class _BuildWatchdog:
    """One rank: a signal that arrives while Gmsh or the geometry (compiled code) builds a
    mesh would wait until the build returns, minutes for a 3D box. This thread sees the
    signal at once (``signal.set_wakeup_fd``); if the same build is still running
    ``GRACE_S`` later, it ends the process (status 130), its result folders abandoned as a
    failed run's are (finished parts kept in ``<out>.incomplete``). Signals elsewhere (time
    stepping, solves) are left to the handlers in the main thread."""

    GRACE_S = 1.0

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(),
                                                 warn_on_full_buffer=False)
        self._thread = threading.Thread(target=self._watch, daemon=True,
                                        name="cathodefem-build-watchdog")
        self._thread.start()

    def _watch(self) -> None:
        from meshes.adapter import building, end_if_still_building

        while True:
            data = self._read.recv(1)
            if not data or data == b"\0":  # closed
                return
            build = building()
            if build is None:
                continue
            time.sleep(self.GRACE_S)
            end_if_still_building(build, functools.partial(self._end, data[0]))

    @staticmethod
    def _end(signum: int) -> None:
        try:
            from cases.output import abandon_staging_folders

            kept = abandon_staging_folders()
            where = f"; the finished parts are in {kept}" if kept is not None else ""
            print(f"cathodefem: interrupted ({signal.Signals(signum).name}) while a mesh was "
                  f"being built; ended at once{where}", file=sys.stderr, flush=True)
        finally:
            os._exit(130)

    def close(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        try:
            self._write.send(b"\0")
        except OSError:
            pass
        self._thread.join(timeout=5)
        self._read.close()
        self._write.close()


def _caused_by_interrupt(error: BaseException) -> bool:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _end_job(signum: int, frame: object) -> None:
    """SIGINT/SIGTERM on a run of several ranks, outside a time step: end every rank now
    (MPI_Abort, exit status 130). The signal reaches each rank wherever it is: a rank that
    stopped by itself would leave the others waiting for it in a collective call (Gmsh runs
    on rank 0 only while the others wait for its mesh), and mpiexec would never return.
    Rank 0 says so; another rank only if rank 0 has not ended the job within half a second
    (it is busy in compiled code, e.g. Gmsh, that does not see the signal until it returns).
    Result folders are staged, so nothing that looks finished is left behind."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    if comm.rank != 0:
        time.sleep(0.5)
    print(f"cathodefem: interrupted ({signal.Signals(signum).name}) outside a time step; "
          f"ending all {comm.size} ranks at once", file=sys.stderr, flush=True)
    time.sleep(0.2)  # mpiexec forwards the line before the abort ends the job's output
    comm.Abort(130)


if __name__ == "__main__":
    sys.exit(main())
