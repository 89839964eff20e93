"""onlstm: the Ordered Neurons LSTM (Shen et al., ICLR 2019) in plain PyTorch.

This package knows nothing of Lightning, Hydra or wandb: ``from onlstm import ONLSTMStack``.
"""

from onlstm.cell import ONLSTMCell, cumax
from onlstm.lm import BackboneConfig, LMOutput, RNNLanguageModel, build_stack
from onlstm.model_card import ModelCardInfo
from onlstm.pretrained import PretrainedFolderError
from onlstm.regularizers import LinearDropConnect, LockedDropout, embedded_dropout
from onlstm.stack import LSTMStack, ONLSTMStack, StackOutput

__all__ = [
    "BackboneConfig",
    "LMOutput",
    "LSTMStack",
    "LinearDropConnect",
    "LockedDropout",
    "ModelCardInfo",
    "ONLSTMCell",
    "ONLSTMStack",
    "PretrainedFolderError",
    "RNNLanguageModel",
    "StackOutput",
    "build_stack",
    "cumax",
    "embedded_dropout",
]
