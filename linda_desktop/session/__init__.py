"""Pure file work on the Chromium profile: validation, backups, keys, state. No Qt, no Playwright."""
