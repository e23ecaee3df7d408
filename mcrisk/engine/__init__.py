"""The device side of a run: its plan, the compiled sample, simulate and reduce stages, and the chunk loop over scenario indices. Writes no files."""
