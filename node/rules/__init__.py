"""The node's domain rules, one module per rule, each the only place that rule is written.

- `networks`: what an IP address or network is, and its canonical form.
- `modes`: node modes, per-host / per-path overrides and the mode settings.
- `ip_lists`: allow/deny/gray list entries.

The value types validate themselves when built (`ModeOverride`, `ModeSettings`, `IPEntry`),
so the config loader, the console, the policy and the store cannot hold an invalid one.
Nothing here does I/O or imports the rest of the node.
"""


class RuleError(ValueError):
    """A value a rule refuses; `field` names what was wrong, `str(err)` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
