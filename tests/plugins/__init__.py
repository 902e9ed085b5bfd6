"""pytest plugins shared by every test suite (loaded by tests/conftest.py)."""
