"""Reading a run folder that `fer-train fit` (or average, soup, fit-portable) wrote.

It imports neither Keras nor TensorFlow, so the command line can check a folder before it
loads the faces and the framework.
"""

import json
import os

# What each reader takes from a run folder, besides its state.json.
LAST = ("last.keras",)  # warm restarts and `average`: the run's final weights and its epochs
BEST = ("best.keras",)  # `soup` and fit-portable: the weights of the best epoch


def read_record(path: str):
    """One of the run's JSON records; a file cut short (a full disk) is a one-line ValueError."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from None


def read_run_state(folder: str, needs: tuple = LAST) -> dict:
    """The folder's state.json, once the folder is known to hold it and the files in `needs`.

    Raises ValueError with a one-line reason when it is not such a folder."""
    missing = [name for name in ("state.json", *needs) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ValueError(f"{folder}: not a fer-train run folder (no {' or '.join(missing)})")
    path = os.path.join(folder, "state.json")
    state = read_record(path)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict) or "arch" not in state["config"]:
        raise ValueError(f"{path}: not a fer-train state file (no config.arch)")
    return state
