"""One LightningModule per task: wiring, logging and optimisation around the onlstm backbone."""
