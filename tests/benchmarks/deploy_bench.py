"""A rollout's timings, measured as an operator sees them: a real mosquitto, a collector and N
real `fer-edge run` devices on a looping real video (deployments on), and `fer-edge deploy
publish` sending a good model (the shipped network quantized otherwise) to two canaries first.

Prints, from the devices' MODEL STATE messages as a subscriber receives them: publish to each
canary's swap, each canary's gate (swap to "kept"), the promotion, publish to the last device's
swap and to its "kept", and the publish command's own wall time. With --bad-from-run RUN --data
CSV it then builds a model that reads every face as neutral from that training run (this repo's
fer-convert) and times its rollback on the canaries by the gate alone.

    python tests/benchmarks/deploy_bench.py [--devices 6] [--gate-seconds 10] [--bad-from-run runs/fer --data fer2013.csv.gz]
"""

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from deploy_helpers import V2, Fleet, neutral_model  # noqa: E402

VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "photos" / "single_face.mp4"


def first(fleet: Fleet, device: str, state: str, version: int) -> float:
    for at, payload in fleet.recorder.on(f"fer-edge/{device}/model"):
        message = json.loads(payload)
        if message["state"] == state and (message.get("release") or {}).get("version") == version:
            return at
    return float("nan")


def rollout(fleet: Fleet, model: Path, version: int, canaries, gate_seconds: float) -> dict:
    started = time.time()
    result = fleet.deploy("publish", model, "--key", fleet.key, "--version", str(version), "--canary", canaries[0],
                          "--canary", canaries[1], "--gate-seconds", str(gate_seconds),
                          "--gate-max-seconds", str(gate_seconds * 5), "--gate-min-faces", "5", "--wait", "300")
    ended = time.time()
    print(result.stderr.rstrip())
    return {"exit": result.returncode, "started": started, "wall": ended - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=6)
    parser.add_argument("--fps", type=int, default=10, help="Frames/s each device reads from the video.")
    parser.add_argument("--gate-seconds", type=float, default=10.0)
    parser.add_argument("--video", type=Path, default=VIDEO)
    parser.add_argument("--bad-from-run", type=Path, help="A fer-train run folder to make the all-neutral model from.")
    parser.add_argument("--data", type=Path, help="The FER2013 CSV fer-convert calibrates the bad model on.")
    args = parser.parse_args()
    if args.devices < 3:
        parser.error("--devices: at least 3 (two canaries and one more)")
    if args.bad_from_run and not args.data:
        parser.error("--bad-from-run needs --data")
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as folder:
        print(f"starting mosquitto, a collector and {args.devices} devices on {args.video.name} at {args.fps} frames/s ...")
        fleet = Fleet(Path(folder), args.video, devices=args.devices, fps=args.fps)
        try:
            names = sorted(fleet.devices, key=lambda name: int(name.split("-")[1]))
            canaries, rest = names[:2], names[2:]
            for device in fleet.devices.values():   # the gate compares with as long a run before the swap
                device.wait_for("deploy: no deployed model", timeout=60)
            time.sleep(args.gate_seconds + 1)
            good = rollout(fleet, V2, 1, canaries, args.gate_seconds)
            t0 = good["started"]
            swaps = {name: first(fleet, name, "trial", 1) - t0 for name in names}
            kept = {name: first(fleet, name, "kept", 1) - t0 for name in names}
            print(f"\ngood model to {args.devices} devices, gate {args.gate_seconds:g} s (exit {good['exit']}):")
            for name in canaries:
                print(f"  canary {name}: swapped {swaps[name]:.2f} s after publish, kept {kept[name]:.2f} s "
                      f"(gate {kept[name] - swaps[name]:.2f} s)")
            print(f"  promoted to the other {len(rest)}: first swap {min(swaps[n] for n in rest):.2f} s, "
                  f"last swap {max(swaps[n] for n in rest):.2f} s, last kept {max(kept[n] for n in rest):.2f} s after publish")
            print(f"  publish command: {good['wall']:.2f} s wall")
            if args.bad_from_run:
                bad_path = neutral_model(args.bad_from_run, args.data, Path(folder) / "neutral-int8.tflite")
                bad = rollout(fleet, bad_path, 2, canaries, args.gate_seconds)
                back = {name: first(fleet, name, "rolled back", 2) - bad["started"] for name in canaries}
                trial = {name: first(fleet, name, "trial", 2) - bad["started"] for name in canaries}
                reached = [n for n in rest if not math.isnan(first(fleet, n, "trial", 2))]
                print(f"\nall-neutral model (exit {bad['exit']}):")
                for name in canaries:
                    print(f"  canary {name}: swapped {trial[name]:.2f} s after publish, rolled back by its gate "
                          f"{back[name]:.2f} s ({back[name] - trial[name]:.2f} s on trial)")
                print(f"  reached other devices: {len(reached)}; publish command: {bad['wall']:.2f} s wall")
        finally:
            fleet.close()


if __name__ == "__main__":
    main()
