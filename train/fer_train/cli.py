"""`fer-train fit` trains the compact CNN on a FER2013 CSV; `fer-train average` averages its
last epochs; `fer-train soup` mixes fine-tuned models; `fer-train pack` and `fer-train
fit-portable` train on a GPU machine without TensorFlow."""

import importlib
import os
import shlex
import sys

from typing import Dict, List, Optional, Sequence, Tuple

import click
import numpy as np

from fer_edge.model.datasets import DatasetError, Faces, ferplus_soft_labels, read_fer2013, read_ferplus
from fer_edge.cli_guard import FiniteFloatRange, guarded

from .data.folders import FolderOptions, is_folder_dataset, read_folder_dataset
from .quiet import filtered_stderr, quiet_tensorflow
from .data.run_folder import BEST, LAST, FitConfig, parent_labels_of, read_run_state, require_new_out


# Options that more than one command takes, defined once.
ANY_DATA = click.option("--data", "data_path", required=True, type=click.Path(),
                        help="FER2013 CSV (emotion,pixels,Usage), plain or .gz, a `fer-train pack` file, or a folder of "
                             "class folders (or of train/, test/ and optionally val/ folders of class folders).")
CLASSES = click.option("--classes", default=None, help="Folder datasets: pick and order these classes (a,b,c).")
DETECT = click.option("--detect", is_flag=True, help="Folder datasets of photos: crop each face with the device's detector.")
GROUP = click.option("--group", default=None, metavar="REGEX",
                     help="Folder datasets: files whose names give the same first match group (a person, a sequence) "
                          "stay on one side of the split.")
EPOCHS = click.option("--epochs", default=45, show_default=True, type=click.IntRange(1))
PEAK_LR = click.option("--lr", default=2e-3, show_default=True, type=FiniteFloatRange(0, min_open=True), help="Peak learning rate (AdamW).")
SEED = click.option("--seed", default=1, show_default=True, type=int)
LIMIT = click.option("--limit", default=None, type=click.IntRange(1),
                     help="Use only the first N rows of each split (smoke runs).")
DISTILL_WEIGHT = click.option("--distill-weight", default=0.5, show_default=True, type=FiniteFloatRange(0, 1),
                              help="Share of the teachers' probabilities in each face's target.")
CLASS_BALANCE = click.option("--class-balance", default=0.3, show_default=True, type=FiniteFloatRange(0, 1),
                             help="Weigh rare classes up by inverse frequency to this power (0: no, 1: fully balanced).")


@click.group(cls=guarded(click.Group))
def main() -> None:
    """Train emotion models on FER2013-style data."""


def _load_splits(data_path: str, limit: Optional[int] = None) -> Dict[str, Faces]:
    """Training / PublicTest / PrivateTest faces of a FER2013 CSV; a one-line error if unusable."""
    from .data.pack import is_pack, read_pack

    try:
        faces = read_pack(data_path) if is_pack(data_path) else read_fer2013(data_path)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"read {data_path}: {faces.summary()}")
    data: Dict[str, Faces] = {}
    for key, usage in (("train", "Training"), ("val", "PublicTest"), ("test", "PrivateTest")):
        data[key] = faces.split(usage, limit)
        click.echo(f"  {usage}: {len(data[key])} faces")
    if not len(data["train"].labels) or not len(data["val"].labels):
        raise click.ClickException(f"{data_path}: needs Training and PublicTest rows")
    return data


def _load_training_data(data_path: str, limit: Optional[int], options: FolderOptions,
                        fer2013_path: Optional[str]) -> Tuple[Dict[str, Faces], Optional[dict]]:
    """The CSV's splits, or a folder dataset's (with its split record); FER2013's PrivateTest
    in the data's labels when `fer2013_path` is given, to measure what fine-tuning forgets."""
    if not os.path.exists(data_path):
        raise click.ClickException(f"{data_path}: no such file or folder")
    if not is_folder_dataset(data_path):
        if options != FolderOptions(seed=options.seed):
            raise click.ClickException("--classes, --detect and --group read folder datasets; "
                                       f"{data_path} is a file")
        return _load_splits(data_path, limit), None
    try:
        data, record = read_folder_dataset(data_path, options, limit, say=click.echo)
        if fer2013_path:
            private = read_fer2013(fer2013_path, usage="PrivateTest").relabelled(data["train"].label_names)
            data["fer2013"] = private.first(limit)
            click.echo(f"FER2013 PrivateTest in these labels: {private.summary()}")
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    return data, record


def _folder_options(classes: Optional[str], detect: bool, group: Optional[str], seed: int) -> FolderOptions:
    return FolderOptions(classes=tuple(c.strip() for c in (classes or "").split(",") if c.strip()),
                         detect=detect, group=group, seed=seed)


def _check_parent_labels(init_from: str, labels: Sequence[str], new_head: bool) -> None:
    try:
        parent = parent_labels_of(init_from)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if parent != tuple(labels) and not new_head:
        raise click.ClickException(f"the data's classes ({', '.join(labels)}) are not {init_from}'s labels "
                                   f"({', '.join(parent)}): pass --new-head to give the model a new output layer")


def _fine_tune_defaults(fine_tuning: bool, epochs: Optional[int], lr: Optional[float], patience: Optional[int],
                        one_warp: Optional[bool]) -> Tuple[int, float, int, bool]:
    """Fine-tuning a trained model on a folder of faces: a short cycle at a lower peak, the
    device's one-warp geometry. Otherwise the full recipe (a CSV run's command keeps meaning
    what it meant)."""
    if fine_tuning:
        return epochs or 12, lr or 5e-4, 0 if patience is None else patience, True if one_warp is None else one_warp
    return epochs or 45, lr or 2e-3, 15 if patience is None else patience, bool(one_warp)


def _ferplus_vote_shares(path: str, rows: np.ndarray) -> np.ndarray:
    """(N,7) FER+ vote shares of the faces at CSV data rows `rows`; a one-line error if the file is unusable."""
    try:
        votes, _ = read_ferplus(path)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    if len(rows) and len(votes) <= rows.max():
        raise click.ClickException(f"{path}: has {len(votes)} rows, but the FER2013 CSV has at least {rows.max() + 1}: "
                                   "not the vote file of this CSV")
    shares = ferplus_soft_labels(votes)[rows]
    click.echo(f"FER+ votes: {int((shares.sum(axis=1) > 0).sum())} of {len(rows)} Training faces have some")
    return shares.astype(np.float32)


def _this_command() -> str:
    """The command line as typed, for the run's provenance."""
    return "fer-train " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _mix_models(loop: str, mixer: str, data_path: str, models: Tuple[str, ...], shares: Tuple[float, ...],
                limit: Optional[int], out: str) -> Tuple[dict, List[float]]:
    """`soup` and `pair`: check the run folders, load the faces, then mix with `loops.<loop>.<mixer>`
    (equal shares unless given); a bad mix is one line. Returns the metrics and the shares used."""
    quiet_tensorflow()
    for model in models:
        if not model.endswith(".tflite"):
            _require_run(model, BEST)
    _require_new_out(out)
    data = _load_splits(data_path, limit)
    with filtered_stderr():
        mix = getattr(importlib.import_module(f"{__package__}.loops.{loop}"), mixer)  # imports TensorFlow
    used = list(shares) or [1 / len(models)] * len(models)
    try:
        return mix(list(models), used, data, out, command=_this_command()), used
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _require_run(folder: str, needs: Tuple[str, ...] = LAST) -> None:
    """Stop before the faces and the framework load when `folder` is not a usable run folder."""
    try:
        read_run_state(folder, needs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _require_new_out(out: str) -> None:
    """Stop before the faces load when --out holds a run that mixing would overwrite."""
    try:
        require_new_out(out)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_metrics(metrics: dict, what: str) -> None:
    for key in ("val", "test", "fer2013"):
        if key in metrics:
            name = {"fer2013": "FER2013 PrivateTest"}.get(key, metrics[key].get("usage", key))
            before = metrics.get("before", {}).get(key)
            was = f"; before fine-tuning {before['accuracy'] * 100:.2f}%, macro-F1 {before['macro_f1'] * 100:.2f}%" if before else ""
            click.echo(f"{name}: accuracy {metrics[key]['accuracy'] * 100:.2f}%, macro-F1 "
                       f"{metrics[key]['macro_f1'] * 100:.2f}% ({what}){was}")


@main.command()
@ANY_DATA
@CLASSES
@DETECT
@GROUP
@click.option("--fer2013", "fer2013_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="With a folder dataset: also measure FER2013 PrivateTest (in its labels) before and after.")
@click.option("--arch", default="fercnn", show_default=True, help="Architecture (fercnn, fercnn-d, fercnn-l, ferdsnet, ferdsnet-s, ferdsnet-l, ferresnet).")
@click.option("--epochs", default=None, type=click.IntRange(1), help="Epochs (default 45; 12 fine-tuning a folder with --init-from).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--lr", default=None, type=FiniteFloatRange(0, min_open=True), help="Peak learning rate, AdamW (default 2e-3; 5e-4 fine-tuning a folder).")
@click.option("--patience", default=None, type=click.IntRange(0),
              help="Early-stop epochs, 0: off (default 15; 0 fine-tuning a folder).")
@SEED
@LIMIT
@click.option("--out", default="runs/fer", show_default=True, type=click.Path(file_okay=False))
@click.option("--resume", is_flag=True, help="Continue an interrupted run in --out.")
@click.option("--init-from", type=click.Path(exists=True),
              help="Start from this finished run's last weights, or a shipped model's float32 twin "
                   "(models/NAME-float32.tflite): a warm restart with a new warm-up and cosine cycle. "
                   "A deeper --arch that only adds residual blocks (fercnn-d from fercnn) grows from it.")
@click.option("--new-head", is_flag=True,
              help="With --init-from a model of other labels: give it a new output layer for the data's classes "
                   "(the labels both share keep their weights).")
@click.option("--teacher", "teachers", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Distil from this fer-edge .tflite model (repeat for an ensemble; each also sees the mirror image).")
@DISTILL_WEIGHT
@click.option("--temperature", default=1.0, show_default=True, type=FiniteFloatRange(min=0.1),
              help="Soften the teachers' probabilities (softmax(log p / T)).")
@click.option("--live-teachers", is_flag=True,
              help="Teachers look at each augmented batch the student sees, every epoch (slower), "
                   "instead of once at the clean faces.")
@click.option("--ferplus", "ferplus_path", default=None, type=click.Path(dir_okay=False),
              help="FER+ vote CSV aligned with --data: mix each Training face's human vote shares into its target.")
@click.option("--ferplus-weight", default=0.3, show_default=True, type=FiniteFloatRange(0, 1),
              help="Share of the FER+ vote shares in each face's target.")
@click.option("--camera-augment", is_flag=True,
              help="Also show the model faces as a detector and camera hand them over: box jitter, "
                   "small faces scaled up, blur, JPEG, gamma, noise.")
@click.option("--one-warp/--chained-warp", default=None,
              help="Flip, rotate, zoom and shift each face in one resampling, as the device crops, instead of a "
                   "chain of layers that softens it (default: one warp fine-tuning a folder, else chained).")
@CLASS_BALANCE
def fit(data_path: str, classes: Optional[str], detect: bool, group: Optional[str], fer2013_path: Optional[str],
        arch: str, epochs: Optional[int], batch_size: int, lr: Optional[float], patience: Optional[int], seed: int,
        limit: Optional[int], out: str, resume: bool, init_from: Optional[str], new_head: bool,
        teachers: Tuple[str, ...], distill_weight: float, temperature: float, live_teachers: bool,
        ferplus_path: Optional[str], ferplus_weight: float, camera_augment: bool, one_warp: Optional[bool],
        class_balance: float) -> None:
    """Train on Training (or train/), select on PublicTest (val), report PrivateTest (test)."""
    quiet_tensorflow()
    if init_from and not init_from.endswith(".tflite"):
        _require_run(init_from)
        if os.path.realpath(init_from) == os.path.realpath(out):
            raise click.ClickException("--init-from must be another run folder than --out (a new run clears --out)")
    data, folder = _load_training_data(data_path, limit, _folder_options(classes, detect, group, seed), fer2013_path)
    if ferplus_path and folder:
        raise click.ClickException("--ferplus votes belong to the FER2013 CSV's rows, not to a folder dataset")
    votes = _ferplus_vote_shares(ferplus_path, data["train"].rows) if ferplus_path else None
    if init_from:
        _check_parent_labels(init_from, data["train"].label_names, new_head)
    with filtered_stderr():
        from .loops.fit import fit as run_fit  # imports TensorFlow: only once the data is known good

    epochs, lr, patience, one_warp = _fine_tune_defaults(bool(init_from and folder), epochs, lr, patience, one_warp)
    config = FitConfig(arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
                       teachers=teachers, distill_weight=distill_weight, temperature=temperature,
                       live_teachers=live_teachers, ferplus=ferplus_path, ferplus_weight=ferplus_weight,
                       camera_augment=camera_augment, one_warp=one_warp, class_weight_power=class_balance,
                       labels=tuple(data["train"].label_names))
    try:
        metrics = run_fit(data, out, config, resume=resume, command=_this_command(), init_from=init_from,
                          ferplus_votes=votes, folder=folder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_metrics(metrics, f"float, best epoch {metrics['best_epoch']}")
    click.echo(f"wrote {out}/best.keras, history.csv, metrics.json, confusion.png, curves.png"
               + (", split.json" if folder else ""))


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="The FER2013 CSV the run was trained on (batch-norm statistics, evaluation).")
@click.option("--run", "run", required=True, type=click.Path(file_okay=False, exists=True),
              help="A run folder written by `fer-train fit` (with epochs/*.weights.h5).")
@click.option("--last", default=10, show_default=True, type=click.IntRange(1), help="Average this many last epochs.")
@LIMIT
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the averaged model.")
def average(data_path: str, run: str, last: int, limit: Optional[int], out: str) -> None:
    """Average a run's last epochs' weights (SWA-style) into OUT/best.keras."""
    quiet_tensorflow()
    _require_run(run)
    _require_new_out(out)
    data = _load_splits(data_path, limit)
    with filtered_stderr():
        from .loops.average import average_run  # imports TensorFlow

    try:
        metrics = average_run(run, data, last, out, command=_this_command())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    _echo_metrics(metrics, f"float, mean of epochs {metrics['averaged_epochs'][0]}-{metrics['averaged_epochs'][-1]}")
    click.echo(f"wrote {out}/best.keras, metrics.json, confusion.png, curves.png")


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="The FER2013 CSV the models were trained on (batch-norm statistics, evaluation).")
@click.option("--model", "models", required=True, multiple=True, type=click.Path(exists=True),
              help="A run folder (its best.keras) or a shipped model's float32 twin; repeat. "
                   "The first run folder gives the network and the provenance.")
@click.option("--share", "shares", multiple=True, type=FiniteFloatRange(0),
              help="Each --model's share of the mean, in the same order, summing to 1 (default: equal).")
@LIMIT
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the mixed model.")
def soup(data_path: str, models: Tuple[str, ...], shares: Tuple[float, ...], limit: Optional[int], out: str) -> None:
    """Mix models fine-tuned from one another (a weight soup) into OUT/best.keras."""
    metrics, _ = _mix_models("average", "soup_models", data_path, models, shares, limit, out)
    mix = " + ".join(f"{s['share']:g} x {s['model']}" for s in metrics["soup"])
    _echo_metrics(metrics, f"float, {mix}")
    click.echo(f"wrote {out}/best.keras, metrics.json, confusion.png, curves.png")


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="The FER2013 CSV the models were trained on (batch-norm statistics of a twin, evaluation).")
@click.option("--model", "models", required=True, multiple=True, type=click.Path(exists=True),
              help="A run folder (its best.keras) or a shipped model's float32 twin; repeat.")
@click.option("--share", "shares", multiple=True, type=FiniteFloatRange(0),
              help="Each --model's share of the mean log-probabilities, in the same order, summing to 1 "
                   "(default: equal).")
@LIMIT
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the pair.")
def pair(data_path: str, models: Tuple[str, ...], shares: Tuple[float, ...], limit: Optional[int], out: str) -> None:
    """Read several finished models as one (the mean of their log-probabilities) into OUT/best.keras."""
    metrics, used = _mix_models("pair", "pair_models", data_path, models, shares, limit, out)
    _echo_metrics(metrics, "float, " + " + ".join(f"{share:g} x {model}" for share, model in zip(used, models)))
    click.echo(f"wrote {out}/best.keras, metrics.json, confusion.png")


@main.command()
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="FER2013 CSV (emotion,pixels,Usage), plain or .gz.")
@click.option("--usage", "usages", multiple=True, type=click.Choice(["Training", "PublicTest", "PrivateTest"]),
              help="Keep only these splits (repeat; default: all).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="The pack file (.npz).")
def pack(data_path: str, usages: Tuple[str, ...], out: str) -> None:
    """Write the faces losslessly in about 0.7 of their raw size, to carry to a training machine."""
    from .data.pack import is_pack, write_pack

    if not is_pack(out):
        raise click.ClickException(f"{out}: a pack's name ends in .npz")
    try:
        faces = read_fer2013(data_path)
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    assert faces.usage is not None  # a CSV says each row's split
    keep = np.isin(faces.usage, usages) if usages else np.ones(len(faces), dtype=bool)
    kept = faces.subset(keep)
    size = write_pack(kept, out)
    click.echo(f"wrote {out}: {len(kept)} faces, {size / 1e6:.1f} MB")


@main.command("faceapi-teacher")
@click.option("-o", "--out", default="runs/teachers/face-api.tflite", show_default=True, type=click.Path(dir_okay=False),
              help="Where to write the teacher model.")
def faceapi_teacher(out: str) -> None:
    """Fetch face-api.js's expression network from the npm registry (pinned sha256) and write
    it as a 48x48 grey teacher for `fit --teacher`. It teaches; it never ships."""
    quiet_tensorflow()
    from .teachers.faceapi import PACKAGE, VERSION, write_teacher

    click.echo(f"fetching {PACKAGE} {VERSION} from the npm registry (once; then cached)...")
    with filtered_stderr():
        write_teacher(out)
    click.echo(f"wrote {out}; distil from it with: fer-train fit --teacher {out} ...")


@main.command("fit-portable")
@ANY_DATA
@CLASSES
@DETECT
@GROUP
@click.option("--arch", default="fercnn", show_default=True, help="Architecture (as for fit; ferresnet is the teacher).")
@EPOCHS
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(1))
@PEAK_LR
@SEED
@LIMIT
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--init-from", type=click.Path(exists=True),
              help="Start from this .keras model (or run folder's best.keras) of the same architecture.")
@click.option("--teacher", "teachers", multiple=True, type=click.Path(exists=True),
              help="Distil from this .keras model or run folder (repeat for an ensemble); it sees each augmented batch.")
@DISTILL_WEIGHT
@CLASS_BALANCE
def fit_portable(data_path: str, classes: Optional[str], detect: bool, group: Optional[str], arch: str, epochs: int,
                 batch_size: int, lr: float, seed: int, limit: Optional[int], out: str, init_from: Optional[str],
                 teachers: Tuple[str, ...], distill_weight: float, class_balance: float) -> None:
    """Train on any Keras backend (KERAS_BACKEND=jax on a GPU machine); select on PublicTest (a folder's val)."""
    quiet_tensorflow()
    data, folder = _load_training_data(data_path, limit, _folder_options(classes, detect, group, seed), None)
    with filtered_stderr():
        from .loops.portable import fit_portable as run  # imports Keras and its backend

    try:
        state = run(data, out, arch=arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                    command=_this_command(), init_from=init_from, teachers=teachers,
                    distill_weight=distill_weight, class_weight_power=class_balance,
                    labels=tuple(data["train"].label_names), folder=folder)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'val' if folder else 'PublicTest'}: accuracy {state['best_val_accuracy'] * 100:.2f}% (float, best epoch {state['best_epoch']}, "
               f"{state['train_seconds']:.0f} s)")
    click.echo(f"wrote {out}/best.keras, last.keras, epochs/, history.csv, state.json" + (", split.json" if folder else ""))


if __name__ == "__main__":
    main()
