"""The pipeline: the step chain (`AEPOTransform`), input preparation, preflight checks, the runner (`PreferencePipeline`)."""
