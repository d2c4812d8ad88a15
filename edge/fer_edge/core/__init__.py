"""The bottom layer every other part uses: errors, logging, atomic writes, clocks, labels, the
records that cross module boundaries, the typed settings sections."""
