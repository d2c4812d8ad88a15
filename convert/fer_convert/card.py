"""The model card, written by fer-convert beside the model from what it measured."""

import os

from typing import Dict, Optional

from fer_edge.core.labels import LABELS
from fer_edge.model.provenance import Ancestor, Averaging, Distillation, FerPlusVotes, PairMember, Provenance, Teacher


def _pct(value: float) -> str:
    return f"{value * 100:.2f} %"


def _n(results: Dict[str, dict], split: str) -> int:
    return next((r[split]["n"] for r in results.values() if split in r), 0)


def _warm_start_line(warm: Ancestor) -> str:
    if warm.run.endswith(".tflite"):  # a shipped model's float32 twin
        start = f"the weights of `{os.path.basename(warm.run)}`, made by `{warm.command}`"
    else:
        start = f"the last weights of `{warm.command}`"
    grown = (f"; grown from `{warm.grown_from}`, new residual block(s) {', '.join(warm.new_blocks)} "
             "starting as identity, so the run began with the parent's function") if warm.grown_from else ""
    head = (f"; the parent read {', '.join(warm.labels)}: a new head, whose labels shared with the parent's "
            "started from its weights") if warm.labels else ""
    return (f"- Warm start: the run below began from {start} "
            f"(commit `{warm.commit}`, {warm.epochs} epochs, {warm.train_seconds:.0f} s{grown}{head})")


def _member_line(member: PairMember) -> str:
    made = f"made by `{member.command}`" if member.command else "its making unknown"
    teachers = (f"; its last run distilled from {'; '.join(_teacher(t) for t in member.distilled.teachers)}"
                if member.distilled else "")
    teachers += (f"; FER+ vote shares mixed in at {member.ferplus.weight:g}" if member.ferplus else "")
    return (f"- Pair member, share {member.share:g} of the mean log-probabilities: `{os.path.basename(member.model.rstrip('/'))}` "
            f"(`{member.architecture}`), {made} (commit `{member.commit}`, {member.epochs} epochs, "
            f"{member.train_seconds:.0f} s{teachers})")


def _averaging_line(averaging: Averaging) -> str:
    if averaging.soup:
        mix = " + ".join(f"{s.share:g} × `{s.model}`" for s in averaging.soup)
        return (f"- Weight soup: `{averaging.command}` ({mix}; a run folder gives its best epoch; "
                "batch-norm statistics re-measured)")
    return (f"- Weight averaging: `{averaging.command}` (mean of epochs "
            f"{averaging.epochs[0]}–{averaging.epochs[-1]}, batch-norm statistics re-measured)")


def _teacher(t: Teacher) -> str:
    """One teacher: ours with its PrivateTest figure, a third party's with what it is and where it came from."""
    if t.private_test_accuracy:
        return f"`{t.model}` ({t.quantization}, PrivateTest {_pct(t.private_test_accuracy)})"
    return f"`{t.model}` ({', '.join(filter(None, [t.architecture, t.source])) or t.quantization})"


def _distillation_line(distilled: Distillation) -> str:
    teachers = "; ".join(_teacher(t) for t in distilled.teachers)
    seen = ("the same augmented face as the student, every epoch" if distilled.live
            else "the clean face and its mirror image, once")
    return (f"- Distillation: each Training face's target mixed {distilled.weight:g} of the teachers' mean "
            f"probabilities ({seen}; temperature {distilled.temperature:g}) into its label; teachers: {teachers}")


def _ferplus_line(ferplus: FerPlusVotes, distilled: Optional[Distillation]) -> str:
    order = "mixed in before the live teachers'" if distilled and distilled.live else "mixed in last"
    return (f"- Human votes: {ferplus.weight:g} of each Training face's target ({order}) came from its FER+ "
            f"vote shares over the seven emotions (`{ferplus.file}`, {ferplus.faces_with_votes} Training faces "
            "with votes; no test row's votes are read)")


def model_card(name: str, results: dict, sizes: dict, latency_ms: dict, metadata: dict, hardware: str) -> str:
    """Markdown for models/NAME.md. `results[mode][split]` are the runtime's measurements:
    the split models were selected on first (PublicTest, or a folder's val), then the one reported."""
    prov = Provenance.from_json(metadata["provenance"])
    labels = metadata["labels"]
    measured = list(next(iter(results.values())))
    gate = measured[0]
    report = measured[1] if len(measured) > 1 else gate   # data with no split held back for reporting
    fer2013 = tuple(labels) == LABELS and gate == "PublicTest"
    classes = (f"7 classes in FER2013 order ({', '.join(LABELS)})" if fer2013
               else f"{len(labels)} classes ({', '.join(labels)})")
    warm = prov.warm_start
    train_seconds = (prov.train_seconds or 0) + (warm.train_seconds if warm else 0)
    lines = [
        f"# {name}", "",
        f"Facial expression classifier for 48×48 grey faces, {classes}. "
        "Produced by this repository's own code; every figure below "
        "was measured by `fer-convert` with the device runtime (LiteRT) on the machine named below.", "",
        "## Provenance", "",
        f"- Data: {prov.dataset}; model selection on {gate}; figures on {report} "
        f"({_n(results, report)} faces) and {gate} ({_n(results, gate)} faces; all-black images skipped).",
        *([_warm_start_line(warm)] if warm else []),
        (f"- Training command: `{prov.train_command}` (commit `{prov.train_commit}`)"
         if prov.train_command else "- Training command: unknown (the model was not in its fer-train run folder)"),
        *([_averaging_line(prov.averaging)] if prov.averaging and prov.averaging.command else []),
        *[_member_line(member) for member in prov.members],
        *([_distillation_line(prov.distilled)] if prov.distilled else []),
        *([_ferplus_line(prov.ferplus, prov.distilled)] if prov.ferplus else []),
        f"- Conversion command: `{prov.convert_command}`",
        f"- Training hardware: {metadata.get('train_hardware') or hardware}",
        f"- Training time: {train_seconds:.0f} s ({train_seconds / 60:.0f} min"
        + (", all runs of the chain" if warm or prov.members else "") + ")"
        + ("" if prov.members else f", best single epoch {prov.best_epoch}"),
        f"- Converted on: {hardware}, {prov.converted_at}",
        f"- Architecture: `{metadata.get('architecture') or 'unknown'}`, {metadata.get('params'):,} parameters, "
        + (f"{metadata['multiply_adds'] / 1e6:.1f} M" if metadata.get("multiply_adds") else "unknown")
        + " multiply-adds per face"
        + (" (flip-averaged)" if metadata.get("flip_average") else ""),
        f"- int8 calibration: {prov.calibration_faces} class-stratified training faces; input quantization "
        f"{metadata['input'].get('quantization')}, output {metadata['output'].get('quantization')}", "",
        "## Accuracy", "",
        f"| model | file size | {report} acc. | {report} macro-F1 | {gate} acc. | {gate} macro-F1 | per-face latency, 1 thread |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, splits in results.items():
        priv, pub = splits.get(report, {}), splits.get(gate, {})
        lines.append(f"| {mode} | {sizes[mode] / 1024:.0f} KB | {_pct(priv.get('accuracy', 0))} | {_pct(priv.get('macro_f1', 0))} "
                     f"| {_pct(pub.get('accuracy', 0))} | {_pct(pub.get('macro_f1', 0))} | {latency_ms.get(mode, float('nan')):.3f} ms |")
    lines += ["", f"Per-class recall on {report}:", "",
              "| model | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for mode, splits in results.items():
        recall = splits.get(report, {}).get("per_class_recall", {})
        lines.append(f"| {mode} | " + " | ".join(f"{recall.get(label, 0) * 100:.1f} %" for label in labels) + " |")
    lines += ["", f"Latency: median of 300 single-face calls after 30 warm-up calls, one thread, real {gate} faces.",
              "", "## Use and limits", "",
              "- Input: a grey 48×48 face made by `fer_edge.model.preprocess.crop_detected` (eye-framed for BlazeFace, "
              "a box crop for Haar) or `crop_face`. The metadata inside the file says so, and `fer-edge` refuses "
              "a model whose metadata it cannot honour.",
              *(["- FER2013 labels are noisy: its authors estimated human accuracy on it at about 65 % (± 5 %); "
                 "disgust has only 436 training faces; fear and disgust have the weakest recall (see the table)."]
                if fer2013 else []),
              "- Emotion recognition is regulated: banned at workplaces and in education in the EU "
              "(AI Act Art. 5(1)(f)); people exposed to it elsewhere must be informed (Art. 50(3)).",
              ("- Training data: FER2013 (Goodfellow et al. 2013), Kaggle competition rules; image rights unresolved."
               if fer2013 else "- Training data: the folder named above; its owner answers for its consent and terms."),
              ""]
    return "\n".join(lines)
