"""The vocabulary every layer shares: errors, events and enums, settings, paths, atomic writes, logs."""
