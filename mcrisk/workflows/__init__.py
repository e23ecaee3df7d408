"""What a user asks for, end to end: run, resume, rerun, stress, sweep, merge, claims, analyze. The only layer that combines the engine, the run folder and the statistics."""
