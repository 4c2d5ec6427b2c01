"""Answering legacy XML-RPC calls through Keap's REST v2 API (issue 6).

Keap is retiring XML-RPC (brownouts through 2026, then off). An account routed ``rest`` has
its calls translated here; one routed ``auto`` falls back here only when XML-RPC is down. The
script never notices: it gets the same values, XML-RPC types and faults the legacy API sent.

* ``table`` is the single source of truth: which methods translate, how faithfully, which are
  safe to repeat; ``python -m shim.rest.table`` writes ``docs/translation.md`` from it.
* ``route`` decides per call (route, fallback safety) and sends the answer.
* ``client`` makes every REST request: credential, the 401 refresh-and-retry-once rule, the
  quota budget, Keap's error answers turned into legacy faults.
* ``legacy`` and ``criteria`` hold what the legacy API did (field types, coercion, its query
  language, its dispatcher's faults) so answers match it without asking Keap.
* ``spec`` declares a legacy table (fields, REST resource, filters) and gives it every
  DataService table method; ``tables`` lists the translated tables; ``listing.run_query`` is
  the one legacy-query pipeline every table uses.
* ``contact_map``, ``contact_write``, ``contacts``, ``tags``, ``dataservice``, ``settings``,
  ``email``, ``goals``, ``files``
  are the translations themselves; ``readiness`` reports who would survive XML-RPC's end.
"""
