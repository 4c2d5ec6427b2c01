"""The admin page of ``shim serve --admin``: keys, chains and sunset readiness at a glance.

Server-rendered HTML that works with JavaScript off. Every action calls the same library
functions as the CLI (``shim.access.issuing``, ``Chains.refresh``, ``Store`` methods,
``shim.rest.readiness``), so the page holds no second copy of any rule.

Modules:

  passwords.py  the admin password's slow hash (hashlib.scrypt)
  sessions.py   signed, expiring session cookies, CSRF tokens and the login rate limit
  render.py     Jinja2 templates (the only module that imports jinja2)
  app.py        the routes: an ASGI app mounted under /admin
"""
