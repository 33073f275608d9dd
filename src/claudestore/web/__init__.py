"""The web store: public pages, the customer dashboard and the admin console (server-rendered)."""
