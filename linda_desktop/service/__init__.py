"""The session supervisor, its pure decisions, diagnostics and the control-channel handler."""
