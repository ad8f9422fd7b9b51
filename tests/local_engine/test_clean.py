"""E-mail boilerplate removed before the local engine reads a ticket."""

from __future__ import annotations

import pytest

from psatriage.local_engine.clean import clean


def test_quoted_reply_and_signature_go() -> None:
    text = (
        "The scanner on floor 3 shows error E42 since this morning.\n"
        "Can someone look at it?\n\n"
        "Best regards,\nAnn Smith\nFinance | Contoso\n+1 555 0100\n\n"
        "On Mon, 3 Mar 2025 at 09:12, Help Desk <help@example.com> wrote:\n"
        "> Your ticket has been received."
    )
    assert clean(text) == (
        "The scanner on floor 3 shows error E42 since this morning.\nCan someone look at it?"
    )


@pytest.mark.parametrize(
    "sign_off",
    [
        "Mit freundlichen Grüßen",
        "Cordialement,",
        "Saludos cordiales",
        "Met vriendelijke groet,",
        "Thanks,",
        "Kind regards",
    ],
)
def test_sign_offs_in_several_languages_end_the_text(sign_off: str) -> None:
    body = "Outlook crashes every time I open a shared calendar from the team site."
    assert clean(f"{body}\n\n{sign_off}\nJan de Vries\nIT department") == body


def test_original_message_headers_and_sent_from_lines_go() -> None:
    text = (
        "Please reset the MFA token for Bob.\nSent from my iPhone\n\n"
        "-----Original Message-----\nFrom: Bob\nSent: Monday\nSubject: MFA"
    )
    assert clean(text) == "Please reset the MFA token for Bob."
    header_block = "VPN is down again.\n\nFrom: Ann <a@example.com>\nSent: Tuesday\nTo: support"
    assert clean(header_block) == "VPN is down again."


def test_disclaimers_and_masks_go() -> None:
    text = (
        "Card XXXX was charged twice by <name> on XX/XX/XXXX.\n\n"
        "This email and any attachments are confidential and intended solely for the addressee.\n"
        "If you received it in error, delete it."
    )
    assert clean(text) == "Card was charged twice by on ."


def test_a_sign_off_early_in_the_text_is_not_a_signature() -> None:
    text = "Thanks,\nthe laptop fan is loud and the laptop gets very hot during video calls"
    assert clean(text) == text


def test_a_text_of_boilerplate_only_keeps_its_words() -> None:
    assert clean("Sent from my iPhone") == "Sent from my iPhone"
    assert clean("<name>") == ""
