"""Admin: policies (which approval profile a user signs in with) and the policy tester.

URL map (under /admin):

    GET       /policies                       policy_list      (ordered table + add form)
    POST      /policies/new                   policy_create    (the add form under the table)
    GET/POST  /policies/<id>/edit             policy_edit      (HTMX: the row becomes a form; else a page)
    GET       /policies/<id>/row              policy_row       (the row again: Cancel of in-place edit)
    POST      /policies/<id>/enabled          policy_toggle    (enabled=1|0)
    POST      /policies/<id>/move             policy_move      (direction=up|down)
    POST      /policies/reorder               policy_reorder   (order=3,1,2: drag and drop)
    GET/POST  /policies/<id>/delete           policy_delete    (GET asks, POST deletes)
    POST      /policies/validate              policy_validate  (?prefix=: inline check of the values)
    GET       /policies/values                policy_values    (?prefix=: the directory's real values)
    GET       /policies/tester                policy_tester    (?identifier=: which policy and why)

Every write is a plain POST form that works without JavaScript; HTMX swaps the table,
a row or a field, and static/js/policies.js adds drag and drop on top.
"""

from __future__ import annotations

from flask import abort, flash, make_response, render_template, request, url_for
from flask_wtf import FlaskForm
from jinja2_fragments.flask import render_block
from wtforms import BooleanField, SelectField, StringField, TextAreaField
from wtforms.validators import Length, Optional

from models import ApprovalProfile, Directory, Policy
from services import policy as policies
from services import profiles as profile_service
from services.directory import DirectoryError

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires
from .forms import EmptyForm

LIST = "admin/policies/list.html"
NEW_PREFIX = "new"


class PolicyForm(FlaskForm):
    """One policy. Choices are filled from the organisation; the service checks them
    (another organisation's profile, a directory the profile does not search)."""

    name = StringField("Name", validators=[Optional(), Length(max=100, message="Use at most 100 characters.")],
                       render_kw={"placeholder": "e.g. Finance needs manager approval"})
    profile = SelectField("Approval profile", validate_choice=False)
    directory = SelectField("Directory", validate_choice=False)
    attribute = StringField("Attribute", render_kw={"list": "policy-attributes", "autocapitalize": "none",
                                                    "spellcheck": "false", "autocomplete": "off",
                                                    "placeholder": "memberOf, department, mail, …"})
    values = TextAreaField("Values", render_kw={"rows": 3, "spellcheck": "false", "autocapitalize": "none"})
    enabled = BooleanField("Enabled", default=True)


def get_policy(policy_id: int) -> Policy:
    """The policy of the admin's organisation, or 404."""
    found = Policy.get_or_none((Policy.id == policy_id) & (Policy.organisation == organisation()))
    if found is None:
        abort(404)
    return found


def prefix_for(policy: Policy | None) -> str:
    """Form field prefix: several policy forms live on one page (add + rows in edit)."""
    return NEW_PREFIX if policy is None else f"policy-{policy.id}"


def make_form(policy: Policy | None = None, formdata=None, prefix: str | None = None) -> PolicyForm:
    """A policy form with the organisation's profiles and directories as choices."""
    org = organisation()
    data = {}
    if policy is not None:
        data = {"name": policy.name, "profile": str(policy.profile_id),
                "directory": "local" if policy.directory_id is None else str(policy.directory_id),
                "attribute": policy.attribute, "values": "\n".join(policy.values or []), "enabled": policy.enabled}
    # formdata=None: a form shown fresh must not pick up another form's POST.
    form = PolicyForm(formdata=formdata, prefix=prefix or prefix_for(policy), data=data)
    profiles = list(ApprovalProfile.select().where(ApprovalProfile.organisation == org).order_by(ApprovalProfile.name))
    form.profile.choices = [(str(p.id), f"{p.name} ({'manager' if p.kind == 'manager' else 'user'} approval)"
                             + (" · default" if p.is_default else "")) for p in profiles]
    directories = list(Directory.select().where(Directory.organisation == org).order_by(Directory.position, Directory.id))
    form.directory.choices = [("local", policies.LOCAL_LABEL)] + [(str(d.id), d.name) for d in directories]
    return form


def profile_directory_hints() -> list[tuple[str, str]]:
    """(profile name, its fallback directories) for the hint under the directory field."""
    org = organisation()
    hints = []
    for profile in ApprovalProfile.select().where(ApprovalProfile.organisation == org).order_by(ApprovalProfile.name):
        names = [policies.directory_label(d) for d in profile_service.directories_of(profile)]
        hints.append((profile.name, ", ".join(names) or "no fallback directories yet"))
    return hints


def form_values(form: PolicyForm) -> dict:
    """The form as the service wants it."""
    return {"name": form.name.data or "", "profile": form.profile.data, "directory": form.directory.data,
            "attribute": form.attribute.data or "", "values": form.values.data or "", "enabled": form.enabled.data}


def list_context(**extra) -> dict:
    """What the list page and its table need."""
    org = organisation()
    items = list(policies.policies_of(org))
    context = {
        "policies": items, "count": len(items), "default_profile": policies.default_profile(org),
        "add_form": make_form(None), "hints": profile_directory_hints(), "form": EmptyForm(),
        "attributes": policies.PSEUDO_ATTRIBUTES, "editing_id": None, "reorder_error": None,
    }
    context.update(extra)
    return context


def _row(policy: Policy, *, editing: bool = False, form: PolicyForm | None = None, status: int = 200):
    """One table row (display, or the in-place edit form)."""
    count = Policy.select().where(Policy.organisation == organisation()).count()
    body = render_template("admin/policies/_row.html", policy=policy, count=count, index=policy.position + 1,
                           editing=editing, row_form=form or make_form(policy), hints=profile_directory_hints())
    return make_response(body, status)


def _targets_row(policy: Policy) -> bool:
    return bool(request.htmx) and request.headers.get("HX-Target") == f"policy-{policy.id}"


@bp.get("/policies")
@requires("settings")
def policy_list():
    """The organisation's policies, top to bottom; first match wins."""
    return render(LIST, **list_context())


@bp.post("/policies/new")
@requires("settings")
def policy_create():
    """Add a policy at the bottom of the list."""
    form = make_form(None, formdata=request.form)
    if form.validate():
        try:
            saved = policies.save_policy(organisation(), None, form_values(form), actor=actor())
        except policies.PolicyError as exc:
            getattr(form, exc.field or "values").errors = [str(exc)]
        else:
            if request.htmx:
                context = list_context()
                return (render_block(LIST, "policy_add", **context)
                        + render_block(LIST, "policy_table", oob=True, added_id=saved.id, **context))
            flash(f"Added the policy {saved.name or saved.attribute}.", "success")
            return redirect_to(url_for("admin.policy_list"))
    return render(LIST, status=422, **list_context(add_form=form))


@bp.route("/policies/<int:policy_id>/edit", methods=["GET", "POST"])
@requires("settings")
def policy_edit(policy_id: int):
    """Change a policy: in place in its table row with HTMX, or on its own page."""
    policy = get_policy(policy_id)
    if request.method == "GET":
        form = make_form(policy)
        if _targets_row(policy):
            return _row(policy, editing=True, form=form)
        return render("admin/policies/edit.html", policy=policy, row_form=form, hints=profile_directory_hints(),
                      attributes=policies.PSEUDO_ATTRIBUTES)
    form = make_form(policy, formdata=request.form)
    if form.validate():
        try:
            policies.save_policy(organisation(), policy, form_values(form), actor=actor())
        except policies.PolicyError as exc:
            getattr(form, exc.field or "values").errors = [str(exc)]
        else:
            if _targets_row(policy):
                return _row(get_policy(policy_id))
            flash(f"Saved the policy {policy.name or policy.attribute}.", "success")
            return redirect_to(url_for("admin.policy_list"))
    policy = get_policy(policy_id)  # unchanged in the database
    if _targets_row(policy):
        return _row(policy, editing=True, form=form, status=422)
    return render("admin/policies/edit.html", status=422, policy=policy, row_form=form, hints=profile_directory_hints(),
                  attributes=policies.PSEUDO_ATTRIBUTES)


@bp.get("/policies/<int:policy_id>/row")
@requires("settings")
def policy_row(policy_id: int):
    """The row as it is saved (Cancel of an in-place edit)."""
    policy = get_policy(policy_id)
    if not request.htmx:
        return redirect_to(url_for("admin.policy_list"))
    return _row(policy)


@bp.post("/policies/<int:policy_id>/enabled")
@requires("settings")
def policy_toggle(policy_id: int):
    """Turn a policy on or off."""
    policy = get_policy(policy_id)
    form = EmptyForm()
    if not form.validate():
        abort(400)
    policies.set_enabled(policy, request.form.get("enabled") == "1", actor=actor())
    if _targets_row(policy):
        return _row(policy)
    flash(f"{'Enabled' if policy.enabled else 'Disabled'} the policy {policy.name or policy.attribute}.", "success")
    return redirect_to(url_for("admin.policy_list"))


@bp.post("/policies/<int:policy_id>/move")
@requires("settings")
def policy_move(policy_id: int):
    """Move a policy one place up or down."""
    policy = get_policy(policy_id)
    direction = request.form.get("direction", "")
    if direction not in ("up", "down"):
        abort(400)
    policies.move_policy(policy, direction, actor=actor())
    if request.htmx:
        return render(LIST, **list_context())
    return redirect_to(url_for("admin.policy_list"))


@bp.post("/policies/reorder")
@requires("settings")
def policy_reorder():
    """Apply a whole new order (drag and drop): ``order`` = ids top to bottom, comma
    separated (or repeated ``ids`` fields). Anything but exactly this organisation's
    policies answers 400 with the reason, and nothing changes."""
    raw = request.form.getlist("ids") or (request.form.get("order") or "").split(",")
    try:
        ids = [int(value) for value in raw if value.strip()]
        policies.reorder_policies(organisation(), ids, actor=actor())
    except ValueError:
        error = "the new order must be policy ids separated by commas; reload the page and try again"
    except policies.PolicyError as exc:
        error = str(exc)
    else:
        if request.htmx:
            return render(LIST, **list_context())
        return redirect_to(url_for("admin.policy_list"))
    return render(LIST, status=400, **list_context(reorder_error=f"The order was not changed: {error}."))


@bp.route("/policies/<int:policy_id>/delete", methods=["GET", "POST"])
@requires("settings")
def policy_delete(policy_id: int):
    """GET asks for confirmation (works without JavaScript); POST deletes."""
    policy = get_policy(policy_id)
    form = EmptyForm()
    name = policy.name or f"{policy.attribute} → {policy.profile.name}"
    if request.method == "POST" and form.validate():
        policies.delete_policy(policy, actor=actor())
        if request.htmx and request.headers.get("HX-Target") == "policy-table":
            return render(LIST, **list_context())
        flash(f"Deleted the policy {name}.", "success")
        return redirect_to(url_for("admin.policy_list"))
    return render("admin/confirm_delete.html", form=form, what="policy", name=name, used_by=[],
                  action=url_for("admin.policy_delete", policy_id=policy.id), back=url_for("admin.policy_list"))


def _prefix_arg() -> str:
    prefix = request.args.get("prefix", NEW_PREFIX)
    if prefix != NEW_PREFIX and not (prefix.startswith("policy-") and prefix[7:].isdigit()):
        abort(400)
    return prefix


@bp.post("/policies/validate")
@requires("settings")
def policy_validate():
    """Check the values as they are typed; answers the feedback under the field."""
    prefix = _prefix_arg()
    values = policies.parse_values(request.form.get(f"{prefix}-values", ""))
    errors = policies.value_errors(values)
    if len(values) > policies.MAX_VALUES:
        errors.append(f"too many values ({len(values)}; at most {policies.MAX_VALUES})")
    return render_template("admin/policies/_values_feedback.html", prefix=prefix, errors=errors, values=values, checked=True)


@bp.get("/policies/values")
@requires("settings")
def policy_values():
    """Real values of the chosen attribute in the chosen directory, to pick from."""
    prefix = _prefix_arg()
    raw_directory = request.args.get(f"{prefix}-directory", "local")
    attribute = request.args.get(f"{prefix}-attribute", "")
    directory = None
    if raw_directory not in ("", "local"):
        if raw_directory.isdigit():
            directory = Directory.get_or_none((Directory.id == int(raw_directory))
                                              & (Directory.organisation == organisation()))
        if directory is None:
            abort(404)
    values, error = [], None
    try:
        values = policies.picker_values(organisation(), directory, attribute)
    except (policies.PolicyError, DirectoryError) as exc:
        error = str(exc)
    return render_template("admin/policies/_picker.html", prefix=prefix, values=values, error=error, attribute=attribute,
                        directory_name=policies.directory_label(directory))


@bp.get("/policies/tester")
@requires("settings")
def policy_tester():
    """Type a username: where they were found, each policy tried with the values it
    compared, the profile chosen and who would be emailed — through ``decide``, the
    same function sign-in calls."""
    identifier = (request.args.get("identifier") or "").strip()
    resolution = policies.decide(organisation(), identifier) if identifier else None
    policy_names = {p.id: p for p in policies.policies_of(organisation())}
    return render("admin/policies/tester.html", identifier=identifier, resolution=resolution,
                  policy_names=policy_names, default_profile=policies.default_profile(organisation()))
