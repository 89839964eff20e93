"""LightningDataModules, one per data source. They read files; tasks never do."""
