"""Unsupervised parsing with a trained ON-LSTM: master-gate distances -> trees (:mod:`.trees`),
parsing metrics (:mod:`.metrics`), batched inference over sentences of different lengths
(:mod:`.inference`), raw text spelt the way a language model's corpus spells words
(:mod:`.text`), and a self-contained HTML page of induced and gold trees (:mod:`.tree_page`). Uses the model (``onlstm.lm``); the model never imports this package."""
