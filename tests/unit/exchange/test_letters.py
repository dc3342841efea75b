"""Letters: layout in both languages (checked by extracting the PDF's text), numbering rules, the detached signature."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import subprocess
import sys
import uuid

import pytest
from joserfc import jws
from joserfc.jwk import OKPKey

from exchange.letters.numbering import RegistrationNumber, check_prefix, derive_prefix
from exchange.letters.render import (
    KINDS,
    Annex,
    LetterContent,
    Party,
    TypstRenderer,
    content_from_json,
    content_to_json,
    letter_document,
)
from exchange.letters.signing import LetterBinding, Verification, pdf_digest, sign_letter, verify_letter
from exchange.letters.typesetting import typeset
from tenants.algorithms import DEPRECATED_ACCEPTED_UNTIL
from tenants.errors import InvalidInput
from tests.letters import version_1_signature
from tests.pdf import fonts, pdf_text, pdfa_conformance
from tests.polling import eventually_blocking

# Letter format version 1 names its signature "EdDSA", which RFC 9864 deprecates; its tests read it on purpose.
reads_version_1 = pytest.mark.filterwarnings("ignore:EdDSA is deprecated:joserfc.errors.SecurityWarning")

CHILD = "Иванова Мария Петровна"


def _content(language: str, kind: str = "petition", **changes: object) -> LetterContent:
    deadline = dt.date(2026, 12, 31)
    content = LetterContent(
        language=language,
        kind=kind,
        registration_number="СЕМ-2026/0042",
        date=dt.date(2026, 11, 22),
        sender=Party(
            name="Центр «Семья»",
            region="Центральный район",
            address="ул. Ленина, 1",
            phone="+7 495 000-00-00",
            email="info@semya.example",
        ),
        addressee=Party(name="Отдел опеки и попечительства"),
        referral_id=uuid.uuid4(),
        case_ref="C-7",
        purpose="social_support",
        problem="Семья нуждается в срочной помощи",
        requested_service="Консультация юриста",
        urgency="urgent",
        respond_by=deadline,
        complete_by=deadline + dt.timedelta(days=30),
        legal_basis={"type": "statutory", "reference": "120-FZ art. 9", "justification": "Ребёнок в опасности"},
        categories=("identity", "family"),
        signer_name="Петрова Анна",
        signer_role="specialist",
        subjects=(
            {
                "ref": "child 1",
                "role": "child",
                "full_name": CHILD,
                "birth_date": "2015-04-12",
                "identifiers": {"snils": "112-233-445 95"},
            },
        ),
        annexes=(Annex("subjects", 1),),
    )
    return LetterContent(**{**{f: getattr(content, f) for f in content.__slots__}, **changes})  # type: ignore[arg-type]


def _pdf(content: LetterContent) -> bytes:
    """The letter laid out by the engine on this thread, as a worker process of the pool lays it out."""
    return typeset(letter_document(content))


def test_a_russian_petition_carries_its_number_addressee_body_annex_and_signer() -> None:
    pdf = _pdf(_content("ru"))
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    for expected in (
        "ХОДАТАЙСТВО",
        "СЕМ-2026/0042",
        "22.11.2026",
        "Центр «Семья»",
        "ул. Ленина, 1",
        "Отдел опеки и попечительства",
        "Семья нуждается в срочной помощи",
        "Консультация юриста",
        "СРОЧНО",
        "31.12.2026",  # the deadline's day as the sender picked it: no time, no zone, no next day
        "120-FZ art. 9",
        "Ребёнок в опасности",
        CHILD,
        "12.04.2015",
        "СНИЛС 112-233-445 95",
        "Специалист — Петрова Анна",
        "Приложение 1",
    ):
        assert expected in text, expected


def test_a_letter_is_pdf_a_2b_with_every_font_embedded() -> None:
    pdf = _pdf(_content("ru"))
    assert pdfa_conformance(pdf) == ("2", "B")
    used = fonts(pdf)
    assert used, "the letter uses no font"
    assert all(used.values()), [name for name, embedded in used.items() if not embedded]


async def test_letters_laid_out_in_worker_processes_are_the_same_pdf() -> None:
    in_processes = TypstRenderer(processes=2)
    contents = [_content("ru"), _content("en", kind="referral"), _content("ru", kind="plan_task")]
    try:
        in_processes.warm_up()
        first = await asyncio.gather(*(in_processes.render(content) for content in contents))
        again = await in_processes.render(contents[0])
    finally:
        in_processes.close()
    # Laid out again (a retry after a crash), anywhere, a letter is byte for byte the PDF it was.
    assert again == first[0]
    assert first == [_pdf(content) for content in contents]
    assert "ХОДАТАЙСТВО" in pdf_text(first[0])
    assert in_processes.unavailable is None


def test_the_pool_ends_with_the_process_that_made_it() -> None:
    """A gateway killed outright (SIGKILL, OOM) shuts no pool down: its layout processes must end by themselves."""
    script = (
        "import multiprocessing, time\n"
        "from exchange.letters.render import TypstRenderer\n"
        "renderer = TypstRenderer(processes=2)\n"
        "renderer.warm_up()\n"
        "print(' '.join(str(p.pid) for p in multiprocessing.active_children()), flush=True)\n"
        "time.sleep(600)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) as gateway:
        try:
            assert gateway.stdout is not None
            pool = [int(pid) for pid in gateway.stdout.readline().split()]
            assert len(pool) == 2
        finally:
            gateway.kill()  # leaving the block closes the pipe and reaps the process
    for pid in pool:
        # Polled, not timed: each process is given up to a minute to notice.
        eventually_blocking(
            lambda: not _alive(pid),  # noqa: B023 - polled at once, for this pid
            within=60,
            every=0.1,
            what=f"pool process {pid} ending with its gateway",
        )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended; only its parent may reap it
    except FileNotFoundError:
        return False


async def test_a_renderer_without_processes_lays_out_in_a_thread() -> None:
    in_thread = TypstRenderer(processes=0)
    in_thread.warm_up()
    content = _content("ru")
    assert await in_thread.render(content) == _pdf(content)


def test_an_english_letter_is_in_english() -> None:
    text = pdf_text(_pdf(_content("en", kind="document_request", urgency="routine")))
    expected_lines = (
        "INTER-AGENCY REQUEST FOR DOCUMENTS",
        "No. СЕМ-2026/0042",
        "22 Nov 2026",
        "To:",
        "Please respond by",
        "31 Dec 2026",
        "30 Jan 2027",
        "statutory duty",
        "Enclosure 1",
        CHILD,
        "Specialist — Петрова Анна",
    )
    for expected in expected_lines:
        assert expected in text, expected
    assert "Просим" not in text
    assert "URGENT" not in text


@pytest.mark.parametrize("language", ["ru", "en"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_template_in_both_languages(language: str, kind: str) -> None:
    titles = {
        ("ru", "referral"): "НАПРАВЛЕНИЕ",
        ("ru", "petition"): "ХОДАТАЙСТВО",
        ("ru", "document_request"): "МЕЖВЕДОМСТВЕННЫЙ ЗАПРОС",
        ("ru", "information_letter"): "ИНФОРМАЦИОННОЕ ПИСЬМО",
        ("ru", "plan_task"): "ПОРУЧЕНИЕ",
        ("en", "referral"): "REFERRAL",
        ("en", "petition"): "PETITION",
        ("en", "document_request"): "REQUEST FOR DOCUMENTS",
        ("en", "information_letter"): "INFORMATION LETTER",
        ("en", "plan_task"): "TASK UNDER THE INDIVIDUAL PREVENTION PLAN",
    }
    plan = (
        {"task_title": "Обследовать условия жизни", "expected_result": "Акт обследования"}
        if kind == "plan_task"
        else None
    )
    text = pdf_text(_pdf(_content(language, kind=kind, plan=plan)))
    assert titles[language, kind] in text
    if plan:
        assert "Обследовать условия жизни" in text
        assert "Акт обследования" in text


def test_every_enclosure_is_laid_out() -> None:
    content = _content(
        "ru",
        needs={"client": "жильё", "carers": "бабушка рядом"},
        summary="Семья переехала в мае.",
        categories=("identity", "social_assessment", "case_notes"),
        annexes=(Annex("subjects", 1), Annex("needs"), Annex("summary")),
    )
    text = pdf_text(_pdf(content))
    for expected in (
        "Приложение 2. Оценка потребностей",
        "потребности клиента",
        "жильё",
        "ресурсы семьи",
        "бабушка рядом",
        "Приложение 3. Краткое содержание случая",
        "Семья переехала в мае.",
    ):
        assert expected in text, expected
    assert "ресурсы окружения" not in text  # a part the assessment left empty is not printed


def test_the_letter_says_nothing_the_projection_does_not_carry() -> None:
    only_refs = _content("ru", subjects=({"ref": "child 1"},), categories=("family",))
    text = pdf_text(_pdf(only_refs))
    assert "child 1" in text
    assert CHILD not in text
    assert "112-233-445 95" not in text


def test_text_is_printed_as_written_never_read_as_markup() -> None:
    # typst markup and code in what a user typed: if any of it were evaluated, the layout would fail (panic, an
    # import outside the templates), change (the page colour) or lose characters (emphasis, maths, labels).
    typed = (
        '] #set page(fill: red) #import "/letter.typ": data #panic("boom") $x^2$ @ref <label> *жирный* '
        "_курсив_ `код` \\ // не комментарий #{1 + 1} <b>жирный</b> & <script>x</script>"
    )
    content = _content("ru", problem=typed, requested_service='#eval("1")', case_ref="]#set text(size: 1pt)[")
    text = " ".join(pdf_text(_pdf(content)).split())  # as one line: a long text wraps where the page ends
    assert typed in text
    assert '#eval("1")' in text
    assert "]#set text(size: 1pt)[" in text  # printed in the opening paragraph and the facts, as written


def test_pending_content_survives_its_round_trip_and_lays_out_the_same_letter() -> None:
    """A pending letter keeps its content as JSON; the worker lays out exactly what the send numbered."""
    content = _content(
        "ru",
        needs={"client": "жильё"},
        plan={"title": "Обследовать", "expected_result": "Акт"},
        annexes=(Annex("subjects", 1), Annex("needs")),
    )
    stored = json.loads(json.dumps(content_to_json(content)))  # as it is sealed and opened again
    assert (stored["respond_by"], stored["complete_by"]) == ("2026-12-31", "2027-01-30")
    restored = content_from_json(stored)
    assert restored == content
    first, second = _pdf(content), _pdf(restored)
    assert first == second  # laid out twice (a retry after a crash), the letter is the same PDF
    assert "31.12.2026" in pdf_text(second)


def test_a_letter_numbered_before_deadlines_were_days_shows_its_deadlines_day_in_its_zone() -> None:
    """Pending content of an earlier release kept each deadline as an instant and the zone it was to be shown in."""
    stored = json.loads(json.dumps(content_to_json(_content("ru"))))
    stored |= {
        "zone": "Europe/Moscow",
        "respond_by": "2026-12-31T20:59:00+00:00",
        "complete_by": "2027-01-30T21:30:00Z",
    }
    restored = content_from_json(stored)
    assert (restored.respond_by, restored.complete_by) == (dt.date(2026, 12, 31), dt.date(2027, 1, 31))


@pytest.mark.parametrize(
    ("slug", "prefix"),
    [("semya", "СЕМ"), ("kdn", "КДН"), ("opeka", "ОПЕ"), ("shkola-12", "ШКО"), ("zhkh", "ЖХ"), ("---", "ПИС")],
)
def test_the_default_prefix_reads_the_slug_in_cyrillic(slug: str, prefix: str) -> None:
    assert derive_prefix(slug) == prefix


def test_registration_numbers_are_zero_padded_and_prefixes_checked() -> None:
    assert str(RegistrationNumber("СЕМ", 2026, 42)) == "СЕМ-2026/0042"
    assert str(RegistrationNumber("КДН", 2027, 12345)) == "КДН-2027/12345"
    assert check_prefix(" сем ") == "СЕМ"
    for bad in ("", "СЕ-М", "A" * 13, "С/М"):
        with pytest.raises(InvalidInput):
            check_prefix(bad)


# -- the detached signature ----------------------------------------------------------------------------------------

SENDER, RECIPIENT, REFERRAL = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
BINDING = LetterBinding("СЕМ-2026/0042", REFERRAL, SENDER, RECIPIENT)
NOW = dt.datetime(2026, 11, 22, 9, 0, tzinfo=dt.UTC)
PDF_BYTES = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", {"kid": "sig-test"})


def _published(key: OKPKey, alg: str | None = "Ed25519") -> list[dict[str, object]]:
    return [{**key.as_dict(private=False), "use": "sig", **({"alg": alg} if alg else {})}]


def _version_1_letter(key: OKPKey, issued_at: dt.datetime, **changes: object) -> str:
    return version_1_signature(PDF_BYTES, BINDING, key, issued_at, **changes)


def test_a_signed_letter_verifies_and_its_signature_is_detached(key: OKPKey) -> None:
    signature = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW)
    _, payload, _ = signature.split(".")
    assert payload == ""
    assert verify_letter(PDF_BYTES, signature, BINDING, _published(key)).verification is Verification.VALID
    # Any JOSE library can check it: re-attach the SHA-256 as the payload (RFC 7515 Appendix F).
    registry = jws.JWSRegistry(algorithms=["Ed25519"], strict_check_header=False)  # the cb.* members are private
    opened = jws.deserialize_compact(signature, key, payload=hashlib.sha256(PDF_BYTES).digest(), registry=registry)
    assert opened.protected["cb.reg"] == "СЕМ-2026/0042"
    assert opened.protected["typ"] == "cb-letter+jws"
    assert (opened.protected["alg"], opened.protected["cb.v"]) == ("Ed25519", 2)
    assert opened.payload == pdf_digest(PDF_BYTES)


@reads_version_1
def test_a_version_1_letter_signed_within_the_period_stays_valid(key: OKPKey) -> None:
    signature = _version_1_letter(key, NOW)
    # Its sender's key as published then ("EdDSA") and as published now (a key of that age carries no "alg").
    for published in (_published(key, "EdDSA"), _published(key, None)):
        check = verify_letter(PDF_BYTES, signature, BINDING, published)
        assert (check.verification, check.kid) == (Verification.VALID, "sig-test")
    last = DEPRECATED_ACCEPTED_UNTIL - dt.timedelta(seconds=1)
    assert (
        verify_letter(PDF_BYTES, _version_1_letter(key, last), BINDING, _published(key, None)).verification
        is Verification.VALID
    )
    tampered = PDF_BYTES.replace(b"%%EOF", b"%%EOG")
    assert verify_letter(tampered, signature, BINDING, _published(key, None)).verification is Verification.INVALID


@reads_version_1
def test_version_1_is_invalid_for_letters_signed_from_the_end_of_the_period_on(key: OKPKey) -> None:
    check = verify_letter(PDF_BYTES, _version_1_letter(key, DEPRECATED_ACCEPTED_UNTIL), BINDING, _published(key))
    assert check.verification is Verification.INVALID
    assert check.reason == "letter format version 1 is not accepted for letters signed from 2028-01-01 on"
    # Format version 2 has no end.
    later = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=DEPRECATED_ACCEPTED_UNTIL)
    assert verify_letter(PDF_BYTES, later, BINDING, _published(key)).verification is Verification.VALID


@reads_version_1
@pytest.mark.parametrize(
    "changes",
    [{"cb.v": 2}, {"alg": "Ed25519"}, {"cb.v": 3, "alg": "Ed25519"}, {"cb.v": True}, {"cb.iat": "1764000000"}],
    ids=repr,
)
def test_a_letter_whose_algorithm_name_version_or_time_does_not_fit_is_invalid(
    key: OKPKey, changes: dict[str, object]
) -> None:
    signature = _version_1_letter(key, NOW, **changes)
    assert verify_letter(PDF_BYTES, signature, BINDING, _published(key, None)).verification is Verification.INVALID


@pytest.mark.parametrize("position", [0, 9, len(PDF_BYTES) // 2, len(PDF_BYTES) - 1])
def test_one_changed_byte_makes_the_letter_invalid(key: OKPKey, position: int) -> None:
    signature = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW)
    tampered = bytearray(PDF_BYTES)
    tampered[position] ^= 0x01
    check = verify_letter(bytes(tampered), signature, BINDING, _published(key))
    assert check.verification is Verification.INVALID
    assert check.reason == "the signature does not match the PDF"


def test_a_signature_for_another_letter_or_by_another_key_is_invalid(key: OKPKey) -> None:
    signature = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW)
    others = [
        LetterBinding("СЕМ-2026/0043", REFERRAL, SENDER, RECIPIENT),
        LetterBinding("СЕМ-2026/0042", uuid.uuid4(), SENDER, RECIPIENT),
        LetterBinding("СЕМ-2026/0042", REFERRAL, uuid.uuid4(), RECIPIENT),
        LetterBinding("СЕМ-2026/0042", REFERRAL, SENDER, uuid.uuid4()),
    ]
    for other in others:
        assert verify_letter(PDF_BYTES, signature, other, _published(key)).verification is Verification.INVALID
    stranger = OKPKey.generate_key("Ed25519", {"kid": "sig-test"})  # same kid, different key
    assert verify_letter(PDF_BYTES, signature, BINDING, _published(stranger)).verification is Verification.INVALID
    assert verify_letter(PDF_BYTES, signature, BINDING, []).reason == "signed with a key the sender does not publish"


def test_signing_the_same_letter_again_gives_the_same_signature(key: OKPKey) -> None:
    """Ed25519 is deterministic and cb.iat is the send time, so a worker retrying after a crash signs identically."""
    first = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW)
    assert sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW) == first


def test_missing_and_malformed_signatures(key: OKPKey) -> None:
    assert verify_letter(PDF_BYTES, None, BINDING, _published(key)).verification is Verification.MISSING
    assert verify_letter(PDF_BYTES, "", BINDING, _published(key)).verification is Verification.MISSING
    registry = jws.JWSRegistry(algorithms=["Ed25519"])
    attached = jws.serialize_compact(
        {"alg": "Ed25519", "kid": "sig-test"}, pdf_digest(PDF_BYTES), key, registry=registry
    )
    for bad in ("not a jws", "a.b.c", attached, "..", "é..é"):
        assert verify_letter(PDF_BYTES, bad, BINDING, _published(key)).verification is Verification.INVALID
    signature = sign_letter(PDF_BYTES, BINDING, signing_key=key, issued_at=NOW)
    assert verify_letter(None, signature, BINDING, _published(key)).verification is Verification.INVALID
