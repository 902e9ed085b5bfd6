"""A local stand-in for WhatsApp Web (markers, QR rotation, linked devices, conflict, logout).

Run: ``python -m tests.whatsapp_sim --port PORT --state-dir DIR``; drive from tests with
``tests.whatsapp_sim.control.Simulator``. Behaviour and endpoints: README.md in this folder.
"""
