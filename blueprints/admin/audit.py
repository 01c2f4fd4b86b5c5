"""URL map (under /admin):

    GET   /audit              audit_list     events newest first, filters in the query string;
                                             HTMX: the results (filtering) or the next 50 (scrolling)
    GET   /audit/export.csv   audit_export   the filtered view as CSV, streamed
    POST  /audit/verify       audit_verify   check the hash chain for a few seconds (from_start=1:
                                             from the first row); HTMX: the chain panel, which
                                             continues by itself until the check is done

An admin reads the events of their organisation and the organisations below it.
"""

from __future__ import annotations

from flask import Response, flash, request, stream_with_context, url_for

from services import audit as audit_service
from services import audit_log

from ..auth.cookies import client_ip
from ..rendering import redirect_to, render
from . import acting_for, actor, bp, organisation, requires
from .forms import EmptyForm

TEMPLATE = "admin/audit/list.html"
FILTER_FIELDS = ("actor", "action", "target", "outcome", "organisation", "from", "to")


def _top_organisation():
    org = organisation()
    seen = {org.id}
    while org.parent_id is not None and org.parent_id not in seen:
        seen.add(org.parent_id)
        org = org.parent
    return org


def _may_start_over() -> bool:
    """The hash chain covers every organisation: only admins of a top-level organisation
    read it all (a check from the first event) or see where it broke."""
    return organisation().parent_id is None


def _chain_rights() -> dict:
    return {"may_start_over": _may_start_over(), "top_organisation": _top_organisation()}


def _filters():
    slugs = audit_log.scope(organisation())
    filters, errors = audit_log.parse_filters(request.args, slugs)
    return slugs, filters, errors


@bp.get("/audit")
@requires("audit")
def audit_list():
    """The audit log of the admin's organisations, newest first, 50 events a page."""
    slugs, filters, errors = _filters()
    before = audit_log.parse_before(request.args.get("before"))
    page = audit_log.page(slugs, filters, before=before)
    return render(
        TEMPLATE, status=422 if errors else 200, page=page, filters=filters, errors=errors, slugs=slugs,
        raw=request.args, before=before, chain=audit_log.chain_status(), verify_form=EmptyForm(),
        known_actions=audit_log.KNOWN_ACTIONS, action_groups=audit_log.ACTION_GROUPS,
        outcomes=audit_log.OUTCOMES, format_time=audit_log.format_time, **_chain_rights(),
    )


@bp.get("/audit/export.csv")
@requires("audit")
def audit_export():
    """The filtered events as a CSV file, written while it is read (keyset batches)."""
    slugs, filters, errors = _filters()
    if errors:
        flash("The export was not made: " + " ".join(errors.values()), "error")
        typed = {name: request.args.get(name, "")[:200] for name in FILTER_FIELDS if request.args.get(name)}
        return redirect_to(url_for("admin.audit_list", **typed))
    audit_service.record("audit.exported", organisation=organisation().slug, target="audit log",
                         details={"filters": filters.query_args()}, actor=actor(), acting_for=acting_for(),
                         ip=client_ip(), user_agent=request.user_agent.string)
    lines = audit_log.csv_lines(slugs, filters)
    response = Response(stream_with_context(lines), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{audit_log.csv_filename()}"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/audit/verify")
@requires("audit")
def audit_verify():
    """Check the hash chain for a few seconds, record the result, show it."""
    form = EmptyForm()
    if not form.validate():
        flash("The form expired. Try again.", "error")
        return redirect_to(url_for("admin.audit_list"))
    try:
        chain = audit_log.verify_step(
            from_start=request.form.get("from_start") == "1", actor=actor(), acting_for=acting_for(),
            organisation=organisation().slug, ip=client_ip(), user_agent=request.user_agent.string,
            may_start_over=_may_start_over(),
        )
    except audit_log.ChainCheckRefused:
        message = (f"Checking the whole log from its first event is for the administrators of "
                   f"{_top_organisation().name}: it covers every organisation. You can check new events "
                   "once they have checked it.")
        if not request.htmx:
            flash(message, "error")
            return redirect_to(url_for("admin.audit_list"))
        return render(TEMPLATE, chain=audit_log.chain_status(), verify_form=form, slugs=audit_log.scope(organisation()),
                      format_time=audit_log.format_time, refusal=message, status=422, **_chain_rights())
    if not request.htmx:
        if chain.ok is False:
            flash(f"The audit log's hash chain is broken at event {chain.details.get('broken_id')}: "
                  f"{chain.details.get('reason')}.", "error")
        elif chain.complete:
            flash(f"The audit log's hash chain is intact up to event {chain.through_id}.", "success")
        else:
            flash(f"Checked up to event {chain.through_id}; choose Continue to check the rest.", "info")
        return redirect_to(url_for("admin.audit_list"))
    return render(TEMPLATE, chain=chain, verify_form=form, slugs=audit_log.scope(organisation()),
                  format_time=audit_log.format_time, continuing=True, **_chain_rights())
