"""Qt-free core: event vocabulary, errors, atomic files, settings and the SessionService."""
