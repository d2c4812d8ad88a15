"""`fer-edge`: the device command line. Heavy imports happen inside each command, so
`fer-edge --help` and start-up stay fast on a Raspberry Pi."""

import json
import sys

import click

from .datasets import DatasetError
from .litert import RuntimeMissing
from .metadata import ModelError

USER_ERRORS = (DatasetError, ModelError, RuntimeMissing, OSError)


class Group(click.Group):
    """Turns the errors a user can cause into one line and exit status 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


@click.group(cls=Group)
@click.version_option(package_name="fer-edge")
def main():
    """Facial emotion recognition on the device: run, eval, bench."""


@main.command("eval")
@click.option("--model", "model_path", default=None, type=click.Path(dir_okay=False), help="Model (.tflite); default: the shipped int8 model.")
@click.option("--data", "data_path", required=True, type=click.Path(), help="FER2013 CSV, or a folder / .tar.gz of class folders.")
@click.option("--usage", default="PrivateTest", show_default=True, help="CSV split to evaluate (Training, PublicTest, PrivateTest, all).")
@click.option("--ferplus", "ferplus_path", default=None, type=click.Path(exists=True, dir_okay=False),
              help="FER+ vote CSV aligned with the FER2013 CSV: score against FER+ majority labels instead.")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def eval_command(model_path, data_path, usage, ferplus_path, threads, as_json):
    """Accuracy, macro-F1, per-class recall and confusion matrix of a model on labelled faces."""
    from .classify import EmotionClassifier
    from .datasets import ferplus_majority, read_dataset, read_ferplus
    from .metrics import classification_report, format_report

    classifier = EmotionClassifier(model_path, threads=threads)
    faces = read_dataset(data_path, usage=None if usage == "all" else usage)
    labels, images = faces.labels, faces.images
    view = "FER2013 labels"
    if ferplus_path:
        votes, _ = read_ferplus(ferplus_path)
        if faces.rows.max(initial=-1) >= len(votes):
            raise click.ClickException(f"{ferplus_path}: has {len(votes)} rows, fewer than {data_path}")
        majority = ferplus_majority(votes)[faces.rows]
        keep = majority >= 0
        labels, images, view = majority[keep], images[keep], f"FER+ majority labels ({int((~keep).sum())} rows without one dropped)"
    if not len(labels):
        raise click.ClickException(f"{data_path}: no labelled faces to evaluate ({faces.summary()})")
    predicted = classifier.predict(images, max_batch=256).argmax(axis=1)
    report = classification_report(labels, predicted)
    report.update(model=classifier.path, data=data_path, usage=usage if data_path.lower().endswith((".csv", ".csv.gz")) else None,
                  labels_view=view, read=faces.summary())
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(f"{classifier.name} on {data_path} ({report['usage'] or 'folders'}; {view}); read {faces.summary()}")
        click.echo(format_report(report))


if __name__ == "__main__":
    sys.exit(main())
