"""The ground floor every other part uses: errors, logging, atomic writes, clocks, labels,
image suffixes, passwords, the records that cross module boundaries, the event sinks'
contract, the typed settings sections. It imports nothing of fer-edge's, nor the command-line
framework or OpenCV, so every command (`--help` included) loads it cheaply."""

MAY_IMPORT: tuple = ()
NEVER_IMPORT = ("click", "cv2")
