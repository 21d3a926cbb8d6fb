"""Exports of the review trail: CSV (one row per trail row) and a FHIR R4B ``Bundle`` of
``DiagnosticReport`` resources (one per review), built and validated with ``fhir.resources``.

FHIR mapping of one review:
* ``DiagnosticReport.status``: ``final`` when the reader agreed with the model or gave their own label,
  ``preliminary`` otherwise (a disagreement without a label: the AI finding stands unconfirmed);
* ``result``: the AI finding, a contained ``Observation`` (the model's score, unit ``score``: not a calibrated
  probability; its label; a ``component`` with the calibrated probability, unit ``probability``, where the
  checkpoint was calibrated) whose ``device`` is a
  contained ``Device`` naming the model and its version; for an out-of-distribution case, whose label and
  score readers were not shown, no value but ``dataAbsentReason`` ``not-applicable`` (the CSV, an audit
  export, keeps the model's label and score, as ``model_risk``);
* ``identifier``: the review's id and its case's, under the database's installation id (migration 0009), which
  the entry's ``fullUrl`` (a UUID) is derived from too: unique across installations and databases made again;
* ``resultsInterpreter``: the reader (by name); ``issued``: when the review was written;
* ``conclusion`` / ``conclusionCode``: the confirmed label (the reader's own, else the model's when they
  agreed, unless the case is out of distribution: readers were not shown its label, so only their own confirms
  anything); SNOMED CT 233604007 |Pneumonia| or 91302008 |Sepsis| when that label is the finding (a mortality
  case's label, DIED_IN_HOSPITAL or SURVIVED, is a prognosis, not a finding: it has no conclusionCode).
* synthetic cases (generated images, never a patient): left out unless asked for (``include_synthetic``); then
  ``meta.security`` HTEST (v3-ActReason, test health data), a conclusion that starts "SYNTHETIC image, not a
  patient", and no ``conclusionCode`` whatever the reader confirmed.
Tombstones (deleted cases) and reviews of deleted cases are in the CSV only: their prediction is gone. The CSV
keeps every review of a synthetic case, its ``synthetic`` column ``true`` (``false`` for a real case; empty once
the case is deleted).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable
from typing import Any

from models.spreadsheet import safe_cell
from serving.schemas import CaseSummary, Review, as_reader_label

CSV_COLUMNS = (
    "review_id",
    "case_id",
    "action",
    "created_at",
    "reviewer",
    "verdict",
    "label",
    "comment",
    "model",
    "model_version",
    "case_kind",
    "model_label",
    "model_risk",
    "model_calibrated_risk",
    "synthetic",  # last: the columns before it keep their places
)
#: U+FEFF, which a UTF-8 file starts with for Excel to read it as UTF-8
BOM = "\ufeff"
SNOMED = "http://snomed.info/sct"
FINDINGS = {  # confirmed label -> SNOMED CT concept
    "PNEUMONIA": ("233604007", "Pneumonia"),
    "SEPSIS": ("91302008", "Sepsis"),
}
_REPORT_CODE = {
    "xray": {"coding": [{"system": "http://loinc.org", "code": "36554-4", "display": "XR Chest Single view"}]},
    "sepsis": {"text": "Sepsis early warning (hourly risk of an ICU stay)"},
    "mortality": {"text": "In-hospital mortality risk from the first 48 hours of an ICU stay"},
}
#: an out-of-distribution case's AI finding: no value (its label and risk were withheld from the readers)
_NOT_APPLICABLE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
            "code": "not-applicable",
            "display": "Not Applicable",
        }
    ]
}
#: a synthetic case's report: test data, not a patient's (HL7 v3 ActReason HTEST, which R4B's security labels take)
_TEST_DATA = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}
SYNTHETIC_CONCLUSION = "SYNTHETIC image, not a patient"
#: what a case's ``risk`` is, per kind: the model's score, which decides its label at the threshold. Training
#: weighs the positive class, so it is not a calibrated probability and is never exported as one.
_SCORE_TEXT = {
    "xray": "pneumonia score (model output, not a calibrated probability)",
    "sepsis": "highest hourly sepsis score (model output, not a calibrated probability)",
    "mortality": "score for death in hospital after 48 hours (model output, not a calibrated probability)",
}


def reviews_csv(trail: Iterable[tuple[Review, CaseSummary | None]]) -> str:
    """The trail as CSV text: a UTF-8 byte order mark first (without it Excel on Windows reads the file as its
    locale's code page: "José" becomes "JosÃ©"), every field quoted, and each cell made safe for a spreadsheet
    (:func:`models.spreadsheet.safe_cell`) whichever separator it splits the file on."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for review, case in trail:
        writer.writerow(
            safe_cell(v)
            for v in (
                review.id,
                review.case_id,
                review.action,
                review.created_at,
                review.reviewer,
                review.verdict,
                review.label,
                review.comment,
                review.model,
                review.model_version,
                case.kind if case else "",
                case.label if case else "",
                f"{case.risk:.6f}" if case else "",
                f"{case.calibrated_risk:.6f}" if case and case.calibrated_risk is not None else "",
                ("true" if case.synthetic else "false") if case else "",
            )
        )
    return out.getvalue()


def _confirmed_label(review: Review, case: CaseSummary) -> str | None:
    if review.label:
        return review.label
    if review.verdict == "agree" and not case.label_withheld:
        return as_reader_label(case.label)
    return None


def _system(installation: str, what: str) -> str:
    """The identifier system of ``what`` (review, case) in this installation's database."""
    return f"urn:medlens:{installation}:{what}"


def diagnostic_report(review: Review, case: CaseSummary, installation: str) -> dict[str, Any]:
    """One review as a FHIR R4B DiagnosticReport (a dict, validated when the bundle is built). ``installation``:
    the database's installation id (:meth:`serving.store.CaseStore.installation`), the namespace of its
    identifiers: the review's (official) and its case's (secondary; the SHA-256 of the file)."""
    confirmed = _confirmed_label(review, case)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "ai-finding",
        "status": "final",
        "code": {"text": _SCORE_TEXT[case.kind]},
        "device": {"reference": "#model"},
        "effectiveDateTime": case.created_at,
    }
    if case.label_withheld:  # out of distribution: the model's output does not apply, as its readers were told
        observation["dataAbsentReason"] = _NOT_APPLICABLE
        observation["interpretation"] = [{"text": "model label withheld: input out of distribution"}]
    else:
        observation["valueQuantity"] = {
            "value": round(case.risk, 6),
            "unit": "score",
            "system": "http://unitsofmeasure.org",
            "code": "1",
        }
        observation["interpretation"] = [{"text": f"model label: {case.label}"}]
        if case.calibrated_risk is not None:
            observation["component"] = [
                {
                    "code": {"text": "calibrated probability (the risk to read; the label is the score's)"},
                    "valueQuantity": {
                        "value": round(case.calibrated_risk, 6),
                        "unit": "probability",
                        "system": "http://unitsofmeasure.org",
                        "code": "1",
                    },
                }
            ]
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"review-{review.id}",
        "identifier": [
            {"use": "official", "system": _system(installation, "review"), "value": str(review.id)},
            {
                "use": "secondary",
                "type": {"text": "MedLens case (SHA-256 of the uploaded file) this review reads"},
                "system": _system(installation, "case"),
                "value": review.case_id,
            },
        ],
        "status": "final" if confirmed is not None else "preliminary",
        "code": _REPORT_CODE[case.kind],
        "effectiveDateTime": case.created_at,
        "issued": review.created_at,
        "resultsInterpreter": [{"display": review.reviewer}],
        "contained": [
            {
                "resourceType": "Device",
                "id": "model",
                "deviceName": [{"name": f"MedLens {review.model}", "type": "model-name"}],
                "version": [{"value": review.model_version}],
            },
            observation,
        ],
        "result": [{"reference": "#ai-finding"}],
        "conclusion": "; ".join(
            part
            for part in (
                SYNTHETIC_CONCLUSION if case.synthetic else "",
                (
                    "the model's label was withheld from the reader (input out of distribution)"
                    if case.label_withheld
                    else f"reader {review.verdict}s with the model ({case.label})"
                ),
                f"reader's label: {review.label}" if review.label else "",
                review.comment or "",
            )
            if part
        ),
    }
    if case.synthetic:  # a reader's confirmation of a generated image is no finding of anyone's
        report["meta"] = {"security": [_TEST_DATA]}
    elif confirmed in FINDINGS:
        code, display = FINDINGS[confirmed]
        report["conclusionCode"] = [{"coding": [{"system": SNOMED, "code": code, "display": display}]}]
    return report


def reviews_fhir(
    trail: Iterable[tuple[Review, CaseSummary | None]],
    timestamp: str,
    installation: str,
    include_synthetic: bool = False,
) -> dict[str, Any]:
    """A ``collection`` Bundle of one DiagnosticReport per review of a case that still exists, a synthetic case's
    only with ``include_synthetic`` (then marked test data). ``installation``: the database's installation id (a
    UUID): each entry's ``fullUrl`` is a UUID derived from it and the review's id, so that no two installations,
    nor one database made again, give one to two reviews."""
    try:
        namespace = uuid.UUID(installation)
    except ValueError:
        raise ValueError(f"installation must be a UUID (CaseStore.installation()), not {installation!r}") from None
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid5(namespace, f'review:{review.id}')}",
            "resource": diagnostic_report(review, case, str(namespace)),
        }
        for review, case in trail
        if review.action == "review" and case is not None and (include_synthetic or not case.synthetic)
    ]
    from fhir.resources.R4B.bundle import Bundle  # here: importing it costs 0.15 s and tens of MB

    bundle = Bundle.model_validate(
        {"resourceType": "Bundle", "type": "collection", "timestamp": timestamp, "entry": entries}
    )
    return bundle.model_dump(mode="json", exclude_none=True)
