"""The admin web UI: server-rendered Jinja2 pages, enhanced with htmx (vendored, no CDN).

Pages call the service layer directly and hold no business rules. Writing a page::

    # src/jackfield/ui/pages/things.py  (create_app includes every module with a router)
    from fastapi import Request
    from fastapi.responses import HTMLResponse, Response

    from jackfield.ui.render import flash, redirect, render
    from jackfield.ui.session import UiForm, UiPrincipal, ui_router

    router = ui_router()  # hidden from OpenAPI; every POST must carry the CSRF token

    @router.get("/things")
    def things(request: Request, who: UiPrincipal) -> HTMLResponse:  # not logged in: login page
        jf = request.app.state.jackfield
        return render(request, "things.html", items=jf.things.list(who))

    @router.post("/things/{thing_id}/poke")
    def poke(request: Request, who: UiPrincipal, thing_id: str, form: UiForm) -> Response:
        ...
        response = redirect("/things")
        flash(request, response, "Poked.")  # or flash(..., "error")
        return response

and ``templates/things.html``::

    {% extends "base.html" %}
    {% block title %}Things{% endblock %}
    {% block content %}
      <h1>Things</h1>
      <form method="post" action="/things/1/poke">{{ csrf_field() }}<button>Poke</button></form>
    {% endblock %}

See ``render.py`` for the template context and ``session.py`` for sessions and CSRF.
The Content-Security-Policy allows scripts and styles from ``/static`` only: no inline
``<script>``, no ``style=""`` attributes, no ``hx-on``/``js:`` expressions.
"""
