"""Browser smoke tests: headless Chromium against a live development server."""
