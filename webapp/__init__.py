"""The hl-debug web app (Flask app factory + blueprints)."""
