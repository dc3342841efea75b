"""The pages' typed forms: each field is one its template posts, and checkbox groups read one box or several."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from gateway.web import forms
from gateway.web.forms import SUBJECT_ROWS, TASK_ROWS

TEMPLATES = Path(forms.__file__).parent / "templates"
# Each form and the template whose form posts it.
POSTED_BY = {
    forms.LoginForm: "login.html",
    forms.CodeForm: "second_factor.html",
    forms.PasswordForm: "password.html",
    forms.LanguageForm: "base.html",
    forms.CaseForm: "case_new.html",
    forms.ConsentForm: "consent_new.html",
    forms.WithdrawalForm: "case.html",
    forms.ComposerChoice: "composer.html",
    forms.ReferralForm: "composer.html",
    forms.PlanForm: "plan_form.html",
    forms.TransitionForm: "referral.html",
    forms.MessageForm: "referral.html",
    forms.AssignmentForm: "referral.html",
    forms.InvitationForm: "admin_invite.html",
    forms.RolesForm: "admin_user.html",
    forms.ClientForm: "admin_client_new.html",
    forms.ConfirmForm: "admin_clients.html",
    forms.AcceptForm: "admin_invitation.html",
    forms.ReviewForm: "dpo_review.html",
    forms.AuditSearchForm: "dpo_search.html",
}
# Fields a program may post though no page shows them: a retried send names its Idempotency-Key as the API does.
NOT_ON_THE_PAGE = {(forms.ReferralForm, "idempotency_key")}


@pytest.mark.parametrize(("form", "template"), POSTED_BY.items(), ids=lambda v: getattr(v, "__name__", v))
def test_every_field_of_a_form_is_posted_by_its_page(form: type[msgspec.Struct], template: str) -> None:
    # A field the page names otherwise would arrive empty, for ever, and nothing would say why.
    posted = set(re.findall(r'name="([^"]+)"', (TEMPLATES / template).read_text()))
    posted = {name.replace("{{ row }}", str(row)) for name in posted for row in range(max(SUBJECT_ROWS, TASK_ROWS))}
    fields = {field.encode_name for field in msgspec.structs.fields(form)}
    assert fields - posted - {name for kind, name in NOT_ON_THE_PAGE if kind is form} == set()


def test_a_checkbox_group_reads_one_box_or_several_and_no_blank() -> None:
    assert forms.ticked("") == []
    assert forms.ticked("identity") == ["identity"]
    assert forms.ticked(["identity", " ", "health"]) == ["identity", "health"]


def test_the_case_form_reads_each_person_under_the_name_the_page_gives_it() -> None:
    case = msgspec.convert({"title": "Family", "subject-1-name": "Anna", "needs-client": "school"}, forms.CaseForm)
    assert (case.subject_1_name, case.needs_client) == ("Anna", "school")
    assert case.fields()["subject-1-name"] == "Anna"


def test_the_plan_form_reads_each_task_under_the_name_the_page_gives_it() -> None:
    plan = msgspec.convert(
        {"auto-close": "on", "task-3-complete-by": "2027-01-31", "subjects": ["a", "b"], "idempotency_key": "k"},
        forms.PlanForm,
    )
    assert (plan.auto_close, plan.task_3_complete_by, plan.idempotency_key) == ("on", "2027-01-31", "k")
    assert plan.fields()["task-3-complete-by"] == "2027-01-31"
    assert plan.fields()["subjects"] == ["a", "b"]
