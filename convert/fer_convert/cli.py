"""`fer-convert`: a trained Keras model -> int8 (and float32/dynamic) TFLite with metadata,
gated on the accuracy the int8 model keeps."""

import dataclasses
import datetime
import os
import platform
import shlex
import sys
import tempfile

from typing import Any, Dict, Optional, Sequence, Tuple

import click

from fer_edge.model.datasets import SPLIT_RECORD, DatasetError, Faces, read_fer2013, read_split_record, split_record_path
from fer_edge.cli_guard import FiniteFloatRange, guarded
from fer_edge.core.atomic import sha256_of
from fer_edge.model.metadata import embed_metadata, model_metadata
from fer_edge.model.preprocess import DEFAULT_MARGIN
from fer_train.data.folders import FolderOptions, is_folder_dataset, read_folder_dataset, read_recorded_split
from fer_train.quiet import filtered_stderr, quiet_tensorflow
from fer_train.data.run_folder import RunRecord, read_record

Quant = Optional[Tuple[float, int]]  # a tensor's (scale, zero point); None for a float tensor


def _run_record(model_path: str) -> RunRecord:
    """What the training run folder says about this model; a bare record for a .keras moved out of it."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), "state.json")
    if not os.path.exists(path):
        return RunRecord()
    try:
        state = read_record(path)
        return RunRecord.from_state(state)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    except (AttributeError, KeyError, TypeError):
        raise click.ClickException(f"{path}: not a fer-train state file") from None


def build_metadata(mode: str, data_path: str, calib: int, run: RunRecord, accuracy: dict,
                   input_quant: Optional[list], output_quant: Optional[list],
                   margin: float = DEFAULT_MARGIN) -> dict:
    provenance = run.provenance(
        dataset=_dataset_line(data_path, run),
        convert_command="fer-convert " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        calibration_faces=calib if mode == "int8" else None,
        converted_on=f"{platform.node()} ({platform.machine()}, {platform.system()})",
        converted_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    return model_metadata(
        mode, input_quant, output_quant, margin,
        labels=run.labels, flip_average=run.flip_average, architecture=run.arch, params=run.params, multiply_adds=run.multiply_adds,
        provenance=provenance.to_json(), train_hardware=run.hardware, accuracy=accuracy,
    )


def _dataset_line(data_path: str, run: RunRecord) -> str:
    if is_folder_dataset(data_path):
        options = FolderOptions.from_json(run.data or {})
        how = ", faces found by the device's detector" if options.detect else ""
        group = f", split keeping groups of `{options.group}` apart" if options.group else ""
        return f"folder `{os.path.basename(os.path.normpath(data_path))}` ({run.data and run.data.get('layout')}{how}{group}), train part"
    return f"FER2013 {os.path.basename(data_path)} (sha256 {sha256_of(data_path)[:16]}), Training split"


def _measure(model_bytes: bytes, metadata: dict, splits: Dict[str, Faces]) -> Tuple[Dict[str, dict], Tuple[Quant, Quant],
                                                                             Optional[float]]:
    """Accuracy per split and single-thread per-face latency, measured by the device runtime."""
    from fer_edge.model.latency import per_face_ms
    from fer_edge.model.classify import EmotionClassifier
    from fer_edge.model.metrics import classification_report

    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(embed_metadata(model_bytes, metadata))
        f.flush()
        classifier = EmotionClassifier(f.name, threads=os.cpu_count() or 1)
        results = {}
        for name, faces in splits.items():
            predicted = classifier.predict(faces.images, max_batch=256).argmax(axis=1)
            report = classification_report(faces.labels, predicted, classifier.labels)
            results[name] = {k: report[k] for k in ("n", "accuracy", "macro_f1", "per_class_recall")}
        quant = (classifier.input_quant, classifier.output_quant)
        latency = per_face_ms(EmotionClassifier(f.name, threads=1), next(iter(splits.values())).images[:300],
                              warmup=30, repeats=300)
    return results, quant, latency


@click.command(cls=guarded(click.Command))
@click.argument("keras_model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", "data_path", required=True, type=click.Path(exists=True),
              help="FER2013 CSV: Training faces calibrate, PublicTest gates, PrivateTest is reported; or the "
                   "folder dataset the model was trained on (or its run folder, or split.json): train, val and "
                   "test as the run's split.json lists them.")
@click.option("--int8", "modes", flag_value="int8", multiple=True, help="Full-integer int8 (int8 in and out).")
@click.option("--float32", "modes", flag_value="float32", multiple=True, help="Float32 model.")
@click.option("--dynamic", "modes", flag_value="dynamic", multiple=True, help="Dynamic-range (int8 weights).")
@click.option("--calib", default=1000, show_default=True, type=click.IntRange(1), help="Calibration faces from Training.")
@click.option("--max-loss", default=1.0, show_default=True, type=FiniteFloatRange(0),
              help="Most points of PublicTest (a folder's val) int8 may lose to float32, or --max-loss-faces "
                   "faces where that is more.")
@click.option("--max-loss-faces", default=2, show_default=True, type=click.IntRange(0),
              help="Most faces int8 may lose, where that is more than --max-loss points "
                   "(on 105 faces one face is 0.95 points).")
@click.option("--allow-loss", is_flag=True, help="Write the int8 model even when it loses more than the gate allows.")
@click.option("--edgetpu", is_flag=True, help="Also compile for a Coral Edge TPU with edgetpu_compiler.")
@click.option("--flip-average", is_flag=True, help="Average the logits of the face and its mirror image inside the model (2x multiply-adds).")
@click.option("--margin", default=DEFAULT_MARGIN, show_default=True, type=FiniteFloatRange(0, 1),
              help="Crop margin around a detected face box that the runtime should use with this model.")
@click.option("--card/--no-card", default=True, show_default=True, help="Write the model card NAME.md beside the model.")
@click.option("--limit", default=None, type=click.IntRange(1), help="Evaluate on the first N rows of each split (smoke runs).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output .tflite; other modes are written beside it as NAME-float32.tflite / NAME-dynamic.tflite.")
def main(keras_model: str, data_path: str, modes: Tuple[str, ...], calib: int, max_loss: float, max_loss_faces: int,
         allow_loss: bool, edgetpu: bool, flip_average: bool, margin: float, card: bool, limit: Optional[int],
         output: str) -> None:
    """Convert KERAS_MODEL (a fer-train best.keras) to TFLite with embedded metadata."""
    quiet_tensorflow()
    modes = tuple(dict.fromkeys(modes or ("int8",)))
    record = _run_record(keras_model)  # before the faces and TensorFlow load: a broken record stops here
    splits, dataset = _splits(data_path, limit, record, keras_model)
    model, record = _load_model(keras_model, record, flip_average)
    # Float32 is always measured: it is the reference the int8 model is gated against.
    converted = [_convert_one(model, mode, splits, dataset, calib, record, margin)
                 for mode in dict.fromkeys(["float32", *modes])]
    results = {c.mode: c.accuracy for c in converted}
    blobs = {c.mode: c.blob for c in converted}
    refused, verdict = _int8_gate(results, blobs, max_loss, max_loss_faces, allow_loss)
    written = [mode for mode in modes if not (mode == "int8" and refused)]
    _write_models(output, modes[0], written, blobs)
    if written and card:
        _write_card(output, modes[0], written, converted)
    if refused:
        raise click.ClickException(f"int8 model refused: {verdict}; calibrate on more faces (--calib) or pass --allow-loss")
    if edgetpu:
        _write_edgetpu(output, blobs)


def _splits(data_path: str, limit: Optional[int], run: RunRecord, keras_model: str) -> Tuple[dict, str]:
    """Three splits in the model's labels, in their roles: calibration faces (all), the gate,
    and the one reported; and the dataset they come from. A FER2013 CSV's Training, PublicTest
    and PrivateTest; a folder dataset's train, val and test as the run's split.json lists them
    (the one `data_path` names, or the one beside the model), else split again as the run did."""
    def say(line: str) -> None:
        click.echo(line, err=True)

    beside = os.path.join(os.path.dirname(os.path.abspath(keras_model)), SPLIT_RECORD)
    dataset = data_path
    try:
        named = split_record_path(data_path)
        record_path = named or (beside if is_folder_dataset(data_path) and os.path.isfile(beside) else None)
        if record_path:
            record = read_split_record(record_path)
            dataset = record["root"] if named else data_path
            say(f"the split of {record_path}, in {dataset}:")
            data = read_recorded_split(record, dataset, say=say)
        elif is_folder_dataset(data_path):
            say(f"no split.json beside {keras_model}: splitting {data_path} again as the run did")
            data, _ = read_folder_dataset(data_path, FolderOptions.from_json(run.data or {}), say=say)
        else:
            faces = read_fer2013(data_path).relabelled(run.labels)
            data = {usage: faces.split(usage) for usage in ("Training", "PublicTest", "PrivateTest")}
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None
    splits = {key: data[key] for key in (("train", "val", "test") if "train" in data else data)}
    if "train" in splits and splits["train"].label_names != run.labels:
        raise click.ClickException(f"{data_path}: its classes {', '.join(splits['train'].label_names)} "
                                   f"are not the model's labels {', '.join(run.labels)}")
    calibration, gate, report = splits
    if not len(splits[gate].labels):
        raise click.ClickException(f"{data_path}: has no {gate} faces to measure the conversion on")
    return {calibration: splits[calibration], gate: splits[gate].first(limit), report: splits[report].first(limit)}, dataset


def _load_model(keras_model: str, run: RunRecord, flip_average: bool) -> Tuple[Any, RunRecord]:
    with filtered_stderr():
        import keras

        from .quantize import with_flip_averaging

    try:
        model = keras.models.load_model(keras_model)
    except Exception as exc:  # Keras raises many types for a bad file
        raise click.ClickException(f"{keras_model}: cannot load Keras model ({str(exc).splitlines()[0]})") from None
    if run.params is None:  # a .keras moved out of its run folder has no record
        run = dataclasses.replace(run, params=int(model.count_params()))
    if flip_average:
        model = with_flip_averaging(model)
        run = dataclasses.replace(run, flip_average=True,
                                  multiply_adds=run.multiply_adds * 2 if run.multiply_adds else None)
    return model, run


@dataclasses.dataclass(frozen=True)
class Converted:
    """One mode's model: the file's bytes (with metadata), what it measured, its metadata."""

    mode: str
    blob: bytes
    accuracy: dict
    latency_ms: Optional[float]  # None only when nothing was timed
    metadata: dict


def _convert_one(model: Any, mode: str, splits: dict, data_path: str, calib: int, run: RunRecord,
                 margin: float) -> Converted:
    from .quantize import calibration_faces, convert

    click.echo(f"converting {mode}...", err=True)
    calibration_split, gate, report = splits
    train = splits[calibration_split]
    calibration = calibration_faces(train.images, train.labels, calib) if mode == "int8" else None
    with filtered_stderr():
        blob = convert(model, mode, calibration)
    evaluate = {k: splits[k] for k in (gate, report) if len(splits[k].labels)}
    draft = build_metadata(mode, data_path, calib, run, {}, None, None, margin)
    accuracy, (in_q, out_q), latency = _measure(blob, draft, evaluate)
    metadata = build_metadata(mode, data_path, calib, run, accuracy,
                              list(in_q) if in_q else None, list(out_q) if out_q else None, margin)
    line = ", ".join(f"{k} {v['accuracy'] * 100:.2f}%" for k, v in accuracy.items())
    click.echo(f"{mode:>8}: {len(blob) / 1024:.0f} KB; {line}; {latency:.3f} ms/face (1 thread)")
    return Converted(mode, embed_metadata(blob, metadata), accuracy, latency, metadata)


def faces_int8_may_lose(n: int, max_loss: float, max_loss_faces: int) -> float:
    """How many of `n` gate faces int8 may get wrong beyond float32: `max_loss` points, or
    `max_loss_faces` faces where that is more. Rounding the weights flips a face or two near a
    decision boundary either way, which on a small split is more than a point by itself."""
    return max(max_loss * n / 100, float(max_loss_faces))


def _int8_gate(results: dict, blobs: dict, max_loss: float, max_loss_faces: int, allow_loss: bool) -> Tuple[bool, str]:
    """Whether the int8 model is refused (it loses more faces to float32 on the gate split than
    faces_int8_may_lose allows), and the verdict in words; says too whether it suits an Edge TPU."""
    if "int8" not in results:
        return False, ""
    from . import edgetpu as tpu

    gate = next(iter(results["float32"]))  # PublicTest, or a folder dataset's val
    n = results["float32"][gate]["n"]
    lost = round((results["float32"][gate]["accuracy"] - results["int8"][gate]["accuracy"]) * n)
    allowed = faces_int8_may_lose(n, max_loss, max_loss_faces)
    verdict = (f"{lost} of {n} {gate} faces lost to float32 ({lost * 100 / max(n, 1):.2f} points); the gate allows "
               f"{allowed:.4g}, the larger of {max_loss:g} point{'' if max_loss == 1 else 's'} and {max_loss_faces} faces")
    click.echo(f"int8: {verdict}")
    problems, ops = tpu.check(blobs["int8"])
    click.echo(f"Edge TPU check: {'compatible' if not problems else 'NOT compatible: ' + '; '.join(problems)} (ops: {', '.join(ops)})")
    return lost > allowed and not allow_loss, verdict


def _mode_path(output: str, mode: str) -> str:
    stem, ext = os.path.splitext(output)
    return f"{stem}-{mode}{ext or '.tflite'}"


def _write_models(output: str, primary: str, written: Sequence[str], blobs: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    for mode in written:
        path = output if mode == primary else _mode_path(output, mode)
        with open(path, "wb") as f:
            f.write(blobs[mode])
        click.echo(f"wrote {path}")


def _write_card(output: str, primary: str, written: Sequence[str], converted: Sequence[Converted]) -> None:
    from fer_edge.core.hardware import describe

    from .card import model_card

    shown = [c for c in converted if c.mode in written]  # float32 first, as converted
    card_path = f"{os.path.splitext(output)[0]}.md"
    metadata = next((c.metadata for c in shown if c.mode == primary), shown[0].metadata)
    with open(card_path, "w") as f:
        f.write(model_card(os.path.basename(output), {c.mode: c.accuracy for c in shown},
                           {c.mode: len(c.blob) for c in shown}, {c.mode: c.latency_ms for c in converted},
                           metadata, describe()))
    click.echo(f"wrote {card_path}")


def _write_edgetpu(output: str, blobs: dict) -> None:
    from . import edgetpu as tpu

    if "int8" not in blobs:
        raise click.ClickException("--edgetpu needs --int8")
    try:
        compiled = tpu.compile_for_edgetpu(blobs["int8"])
    except (tpu.CompilerMissing, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    path = _mode_path(output, "edgetpu")
    with open(path, "wb") as f:
        f.write(compiled)
    click.echo(f"wrote {path}")
