"""What users write: the study file (YAML 1.2, closed pydantic schema, DIST forms), the catalog and its presets, and variants by dotted path. Needs no JAX."""
