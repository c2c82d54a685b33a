"""The pure core: models, report normalisation, routing, transitions, money. No I/O.

Modules, one idea each: ``enums``, ``models`` (state), ``messages`` (LP requests and
reports), ``effects`` (DB events, LP requests, calculations), ``codec`` (the one
serialisation), ``reports`` (normalisation), ``routing`` (the dispatcher table),
``money`` and ``accounting`` (DESIGN §5), ``statemachine``, ``outcomes``,
``transitions`` (one function per worker), ``intake`` (client request rules) and
``docs`` (renders docs/domain.md).
"""
