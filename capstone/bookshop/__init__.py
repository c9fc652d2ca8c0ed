"""Folio, a small bookshop API: the capstone's app. Run the doctor on it and fix what it finds.

Modules: ``main`` (the app, its lifespan and middleware), ``users``, ``orders``, ``reports``
and ``admin`` (the routes), ``security`` (API keys), ``store`` (the data) and ``partners``
(the carrier, audit and search services the shop calls; stand-ins on 127.0.0.1, not part of
what you fix).
"""
