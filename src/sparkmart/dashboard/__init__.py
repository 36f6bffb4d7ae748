"""The web dashboard over PostgreSQL: live sales, batch analytics and ML, the run monitor.

``sparkmart.dashboard.app.create_app(settings)`` builds the app; ``serve(settings, host, port)``
runs it (docs/dashboard.md).
"""
