"""The tasks: one LightningModule per task at this level (wiring, logging and optimisation around the
onlstm backbone, and what only that task uses); ``tasks.jobs`` runs them from a composed config,
``tasks.reports`` reads the run folders they leave."""
