"""The app's routes by area: pages and the widget script (pages.py), a session's REST API
(sessions.py), its event streams and WebSockets (streams.py), the admin's (admin.py)."""
