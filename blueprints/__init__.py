"""Web layer: one package per area. Views parse input, call one service, map domain
errors to messages and choose a full page or an HTMX partial (``rendering.render``)."""
