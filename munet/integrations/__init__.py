"""What connects the runtime to the places it is used: DICOM SEG/SR output (``dicom_outputs``),
MLflow tracking (``tracking``), sharing bundles (``sharing``) and the MONAI Label app
(``monailabel_app``, which needs the optional monailabel install). Nothing is imported here:
each is imported where it is used."""
