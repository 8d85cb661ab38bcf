"""Lightning callbacks that count in generator steps (one training batch), the unit ganx users think in.

Configs name them as ``ganx.callbacks.<Name>`` (conf/callbacks/default.yaml) and checkpoints keep their state under
their class names, so the names stay here whichever module holds a class.
"""

from ganx.callbacks.checkpoints import BestCheckpoint, GeneratorStepCheckpoint
from ganx.callbacks.progress import GeneratorStepProgressBar, LogLineProgress, TimeEstimate, progress_bar
from ganx.callbacks.records import LoggerSummary, RunRecord, RunSummary, SampleGrid

__all__ = ["BestCheckpoint", "GeneratorStepCheckpoint", "GeneratorStepProgressBar", "LogLineProgress", "LoggerSummary",
           "RunRecord", "RunSummary", "SampleGrid", "TimeEstimate", "progress_bar"]
