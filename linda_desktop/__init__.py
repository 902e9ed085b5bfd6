"""Linda Desktop: keeps one WhatsApp Web session alive across every restart."""

__version__ = "0.1.0"
APP_NAME = "Linda Desktop"
APP_ID = "linda-desktop"
