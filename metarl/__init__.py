"""metarl: meta reinforcement learning with dense episode rewards for test-time compute.

A completion is cut into episodes (attempt, verify, revise, ...) by a segmenter; every episode
gets a dense reward (verification correctness for Obj-1, information gain / progress for Obj-2);
a TRL-based policy-gradient trainer optimises the summed episode rewards plus alpha times final
correctness under a token budget C.
"""
from metarl.types import Episode, EpisodeKind, Trace

__all__ = ["Episode", "EpisodeKind", "Trace"]
__version__ = "0.1.0"
