"""The `pgo-work` command's sub-commands, one module per concern (`service.cli` parses)."""
