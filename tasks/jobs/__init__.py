"""Run machinery: building and running a job from a composed config (Trainer, fit/test, resume, checkpoints, callbacks, tracking, schemas) and the run-folder layout."""
