"""Attack store: the interface (`base`) and its backends."""

from node.store.base import (
    AttackFilter,
    AttackPage,
    AttackRecord,
    Hit,
    IPEntry,
    ModeOverride,
    ModeSettings,
    Stats,
    Store,
)

__all__ = ["AttackFilter", "AttackPage", "AttackRecord", "Hit", "IPEntry", "ModeOverride",
           "ModeSettings", "Stats", "Store"]
