"""Domain logic. Services never touch ``request``, ``session``, ``g`` or ``current_user``:
the acting account, IP and user agent are passed in as arguments."""
