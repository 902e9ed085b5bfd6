"""Playwright side: find a browser, drive WhatsApp Web. No Qt."""
