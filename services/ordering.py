"""Ordered lists (mail servers, directories, policies): move an item up or down, or
apply a whole new order, keeping positions 0..n-1."""

from __future__ import annotations

from models import db


def renumber(items) -> None:
    """Give ``items`` (in their new order) positions 0..n-1, writing only what changed."""
    for position, item in enumerate(items):
        if item.position != position:
            type(item).update(position=position).where(type(item).id == item.id).execute()
            item.position = position


def move(siblings_query, item, direction: str) -> bool:
    """Move ``item`` one place up or down among ``siblings_query`` (all items of its list).
    Returns False when it is already at that end."""
    if direction not in ("up", "down"):
        raise ValueError("direction must be 'up' or 'down'")
    model = type(item)
    with db.atomic():
        items = list(siblings_query.order_by(model.position, model.id))
        index = next(i for i, other in enumerate(items) if other.id == item.id)
        target = index - 1 if direction == "up" else index + 1
        if not 0 <= target < len(items):
            return False
        items[index], items[target] = items[target], items[index]
        renumber(items)
    return True


def reorder(siblings_query, ordered_ids: list[int]) -> None:
    """Apply a complete new order given as ids (drag and drop). The ids must be exactly
    the list's items; anything else raises ValueError and changes nothing."""
    with db.atomic():
        items = {item.id: item for item in siblings_query}
        if sorted(ordered_ids) != sorted(items):
            raise ValueError("the new order does not list exactly the items of this list; reload the page and try again")
        renumber([items[i] for i in ordered_ids])
