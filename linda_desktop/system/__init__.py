"""Per-OS integration: autostart and single instance. (Named so it does not shadow the stdlib `platform`.)"""
