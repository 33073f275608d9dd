"""Page handlers, one module per area: public, auth, dashboard, console, docs."""
