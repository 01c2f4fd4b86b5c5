"""The one place that decides between a full page and an HTMX partial.

A partial is a named block of the page template: the block named like the DOM id that
htmx targets (``HX-Target: dev-mail-list`` → block ``dev_mail_list``). Boosted
navigation, history restores and requests without a matching block get the full page.
"""

from __future__ import annotations

from flask import current_app, make_response, redirect, render_template, request
from jinja2_fragments.flask import render_block


def wants_partial() -> bool:
    """True for an HTMX request that will swap part of the current page."""
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def block_for_target(template_name: str) -> str | None:
    """The block of ``template_name`` that renders the element htmx targets, if any."""
    target = request.headers.get("HX-Target")
    if not target or not wants_partial():
        return None
    block = target.replace("-", "_")
    template = current_app.jinja_env.get_template(template_name)
    return block if block in template.blocks else None


def render(template_name: str, status: int = 200, **context):
    """Render ``template_name`` as a page, or only the targeted block for HTMX."""
    block = block_for_target(template_name)
    if block:
        body = render_block(template_name, block, **context)
    else:
        body = render_template(template_name, **context)
    return make_response(body, status)


def redirect_to(url: str):
    """Navigate after a successful write: ``HX-Redirect`` for HTMX (a full page load, never
    a redirect swapped into a target), a 303 for plain forms."""
    if request.htmx:
        response = make_response("", 204)
        response.headers["HX-Redirect"] = url
        return response
    return redirect(url, code=303)
