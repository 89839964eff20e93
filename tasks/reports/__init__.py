"""Offline tools that read run folders: the evidence report, the sweep summary, figures, onlstm-parse."""
